"""BTF decoding, knobs and stats rendering against real BTF: the host kernel's and our objects'."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memcg_bpf.bpf import btf as B
from memcg_bpf.runtime import knobs as K
from memcg_bpf.bpf.vmlinux_h import raw_btf
from memcg_bpf.errors import UsageError
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.runtime.fields import Kind
from memcg_bpf.runtime.prom import render as prometheus
from memcg_bpf.runtime.stats import Snapshot, is_slot_table, numbers, table

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


@pytest.mark.skipif(not HOST_BTF.exists(), reason="the host kernel exposes no BTF")
def test_host_kernel_btf_decodes(libbpf: Libbpf) -> None:
    btf = B.Btf(raw_btf(libbpf, HOST_BTF))
    list_head = btf.find("list_head", B.STRUCT)
    assert list_head is not None and btf.size(list_head.id) == 16
    assert btf.decode(list_head.id, struct.pack("<QQ", 0x1000, 0x2000)) == {"next": 0x1000, "prev": 0x2000}
    task = btf.find("task_struct", B.STRUCT)
    assert task is not None and "pid" in [m.name for m in task.members]
    assert btf.find("memcg_ops", B.STRUCT) is None, "the host kernel is not patched"


def object_btf(libbpf: Libbpf, path: Path) -> tuple[B.Btf, Object]:
    obj = Object(libbpf, path)
    return B.Btf(obj.raw_btf()), obj


def test_policy_btf_decodes_values_and_cgroup_ids(libbpf: Libbpf, policy_objects: dict[str, Path]) -> None:
    btf, obj = object_btf(libbpf, policy_objects["telemetry"])
    with obj:
        stats_t = btf.find("cgroup_stats", B.STRUCT)
        assert stats_t is not None
        raw = struct.pack("<2Q6Q10QQ", 17, 0xffff8880_0000_1000, 9, 7, 2, 9, 0, 9, *range(10), 123)
        value = btf.decode(stats_t.id, raw)
        assert value["head"] == {"cgroup": 17, "memcg": 0xffff8880_0000_1000}
        assert value["calls"] == 9 and value["failed"] == 2
        assert value["reclaim_log2_pages"] == list(range(10))
        assert value["last_failed_ns"] == 123
        cgid = btf.find("memcg_bpf_cgid_t", B.TYPEDEF)
        assert cgid is not None and btf.is_cgid(cgid.id)
        decoded = btf.decode(cgid.id, struct.pack("<Q", 17))
        assert isinstance(decoded, B.CgroupId) and decoded == 17
        bss = btf.find(".bss", B.DATASEC)
        assert bss is not None
        names = [btf[v].name for v, _, _ in bss.secinfo]
        assert names == ["dropped_calls"]
        # Its table of cgroups is shown by slot (memcg_bpf_slot()), a plain struct is not.
        assert is_slot_table(btf, stats_t.id)
        slot_head = btf.find("memcg_bpf_slot_head", B.STRUCT)
        assert slot_head is not None and not is_slot_table(btf, slot_head.id)


def reclaim_boost_knobs(libbpf: Libbpf, path: Path) -> tuple[B.Btf, dict[str, K.Knob]]:
    btf, obj = object_btf(libbpf, path)
    with obj:
        rodata = next(m for m in obj.maps() if m.name.endswith(".rodata"))
        return btf, K.knobs_of(btf, bytes(rodata.initial_value()))


def test_knobs_have_types_and_defaults(libbpf: Libbpf, policy_objects: dict[str, Path]) -> None:
    btf, knobs = reclaim_boost_knobs(libbpf, policy_objects["reclaim_boost"])
    assert list(knobs) == ["reclaim_pages", "cgroup_ids"]
    assert knobs["reclaim_pages"].default == 128 and knobs["reclaim_pages"].type_name == "__u32"
    assert knobs["cgroup_ids"].type_name == "memcg_bpf_cgid_t[16]"
    assert K.describe_knobs(knobs) == ("valid knobs: reclaim_pages (__u32, default 128), "
                                       "cgroup_ids (memcg_bpf_cgid_t[16], default [])")


def test_knob_encoding(libbpf: Libbpf, policy_objects: dict[str, Path]) -> None:
    btf, knobs = reclaim_boost_knobs(libbpf, policy_objects["reclaim_boost"])
    assert K.encode(btf, knobs["reclaim_pages"], "0x100", (1, 512)) == struct.pack("<I", 256)
    ids = K.encode(btf, knobs["cgroup_ids"], "17,42")
    assert ids == struct.pack("<QQ", 17, 42) + bytes(8 * 14)
    root_id = os.stat("/sys/fs/cgroup").st_ino
    assert K.encode(btf, knobs["cgroup_ids"], "/")[:8] == struct.pack("<Q", root_id)
    with pytest.raises(UsageError, match="holds at most 16 values, got 17"):
        K.encode(btf, knobs["cgroup_ids"], ",".join(["1"] * 17))
    with pytest.raises(UsageError, match="must be in 1..512, got 513"):
        K.encode(btf, knobs["reclaim_pages"], "513", (1, 512))


SNAPSHOT = Snapshot(
    policy="telemetry",
    globals={"total_calls": 10, "total_failed": 3},
    kinds={"total_calls": Kind.COUNTER, "total_failed": Kind.COUNTER, "cgroups_calls": Kind.COUNTER,
           "cgroups_failed": Kind.COUNTER, "cgroups_hist": Kind.COUNTER},
    maps={"cgroups": [
        {"key": {"cgroup_id": 17, "path": "/demo"}, "value": {"calls": 10, "failed": 3, "hist": [3, 0]}},
        {"key": {"cgroup_id": 99, "path": None}, "value": {"calls": 1, "failed": 0, "hist": [0, 0]}},
    ]},
)


def test_prometheus_output_parses() -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(prometheus(SNAPSHOT)) for s in family.samples}
    assert samples[("memcg_bpf_telemetry_total_calls_total", (("policy", "telemetry"),))] == 10
    key = (("cgroup", "/demo"), ("cgroup_id", "17"), ("policy", "telemetry"))
    assert samples[("memcg_bpf_telemetry_cgroups_failed_total", key)] == 3
    assert samples[("memcg_bpf_telemetry_cgroups_hist_total", tuple(sorted((*key, ("index", "0")))))] == 3


def test_table_and_rates() -> None:
    text = table(SNAPSHOT, {("m", "cgroups", "/demo (id 17)", "calls"): 2.5})
    assert "/demo (id 17)" in text and "? (id 99)" in text
    assert "calls                  10 (+2.5/s)" in text
    assert numbers(SNAPSHOT)[("g", "total_calls")] == 10


def test_stats_show_only_the_set_entries_of_a_cgroup_id_array(tmp_path: Path) -> None:
    from memcg_bpf.bpf.btf import CgroupId
    from memcg_bpf.runtime.cgroups import CgroupNames
    from memcg_bpf.runtime.stats import Reader

    reader = Reader(None, tmp_path, CgroupNames(tmp_path))  # type: ignore[arg-type]
    ids = [CgroupId(0), CgroupId(7), CgroupId(0)]
    assert reader.present({"cgroup_ids": ids, "plain": [0, 3]}) == {
        "cgroup_ids": [{"cgroup_id": 7, "path": None}], "plain": [0, 3]}
