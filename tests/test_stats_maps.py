"""stats on real maps of every shape: per-CPU types, strings, bitfields, maps without BTF, knobs, Prometheus.

A small object (tests/bpf/shapes.bpf.c) is loaded into the host kernel, its
program attached to a throwaway cgroup (so its per-CPU cgroup storage has an
entry), and its maps pinned as `load` pins a policy's, in a bpffs of the test's own.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memcg_bpf.bpf import btf as B
from memcg_bpf.runtime import knobs as K
from memcg_bpf.runtime import store
from memcg_bpf.runtime import prom
from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.runtime.cgroups import CgroupNames
from memcg_bpf.runtime.compile import Toolchain, compile_bpf, vmlinux_h
from memcg_bpf.errors import MemcgBpfError, PolicyGone
from memcg_bpf.testbed.kernel.api import find_built
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.bpf.maptypes import MapType, UnreadableMap
from memcg_bpf.paths import cache_dir
from memcg_bpf.runtime.stats import Reader, Snapshot
from memcg_bpf.runtime.toolchain import find_clang
from memcg_bpf.runtime.watch import watch

SHAPES = Path(__file__).parent / "bpf" / "shapes.bpf.c"
BPF_CGROUP_INET_EGRESS = 1
NAME = "shapes"


def cgroup2_mount() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    pytest.skip("no cgroup2 mount")


@pytest.fixture(scope="module")
def shapes_object(libbpf: Libbpf, tmp_path_factory: pytest.TempPathFactory) -> Path:
    kernel = find_built()
    headers = vmlinux_h(libbpf, kernel.vmlinux, cache_dir())
    return compile_bpf(SHAPES, tmp_path_factory.mktemp("shapes"), headers, Toolchain(find_clang(), kernel.include))


@dataclass
class Loaded:
    sys: Sys
    obj: Object
    directory: Path
    reader: Reader

    def fd(self, map_name: str) -> int:
        return self.obj.map(map_name).fd

    def snapshot(self) -> Snapshot:
        return self.reader.snapshot(NAME)


@pytest.fixture
def loaded(libbpf: Libbpf, shapes_object: Path, bpffs: Path) -> Iterator[Loaded]:
    sys = Sys(libbpf)
    cgroup = cgroup2_mount() / f"memcg-bpf-test-{uuid.uuid4().hex[:8]}"
    cgroup.mkdir()
    cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    lib = libbpf.lib
    lib.bpf_prog_attach.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    lib.bpf_prog_detach2.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    with Object(libbpf, shapes_object) as obj:
        obj.load()
        prog_fd = obj.program("egress").fd
        assert lib.bpf_prog_attach(prog_fd, cgroup_fd, BPF_CGROUP_INET_EGRESS, 0) == 0
        try:
            directory = bpffs / "memcg-bpf" / NAME
            (directory / "maps").mkdir(parents=True)
            for m in obj.maps():
                m.pin(str(directory / "maps" / m.name.replace(".", "_")))
            # stats reads no link; a map stands in for it (the pin's presence means "loaded").
            sys.obj_pin(obj.map("plain").fd, str(directory / "link"))
            store.write_meta(sys, directory, {"object": str(shapes_object)})
            yield Loaded(sys, obj, directory, Reader(sys, root=bpffs / "memcg-bpf"))
        finally:
            lib.bpf_prog_detach2(prog_fd, cgroup_fd, BPF_CGROUP_INET_EGRESS)
            os.close(cgroup_fd)
            cgroup.rmdir()


# struct stats_shape, as tests/bpf/shapes.bpf.c lays it out.
def shape(*, cgroup: int = 0, hits: int = 0, last_ns: int = 0, wait_ns: int = 0, level: int = 0, mode: int = 0,
          seen: bool = False, name: bytes = b"", small: int = 0, flags: int = 0, hist: tuple[int, int] = (0, 0)) -> bytes:
    bits = (small & 0xF) | (flags & 0xF) << 4
    return struct.pack("<5QI?8sB2x2Q", cgroup, hits, last_ns, wait_ns, level, mode, seen, name, bits, *hist)


def test_layout_matches_the_object(loaded: Loaded) -> None:
    btf = B.Btf(loaded.obj.raw_btf())
    t = btf.find("stats_shape", B.STRUCT)
    assert t is not None and btf.size(t.id) == len(shape()) == 72
    assert [m.bit_offset for m in t.members] == [0, 64, 128, 192, 256, 320, 352, 360, 424, 428, 448]


def per_cpu(sys: Sys, values: list[bytes]) -> bytes:
    assert len(values) == sys.possible_cpus
    return b"".join(v.ljust((len(v) + 7) & ~7, b"\0") for v in values)


@pytest.mark.parametrize("map_name", ["percpu_hash", "percpu_array", "lru_percpu_hash", "cg_storage"])
def test_per_cpu_maps_are_sized_and_combined_by_field(loaded: Loaded, map_name: str) -> None:
    sys = loaded.sys
    ncpu = sys.possible_cpus
    fd = loaded.fd(map_name)
    key = next(sys.keys(fd, loaded.obj.map(map_name).key_size), b"\0\0\0\0")  # cg_storage: the attached cgroup
    values = [shape(cgroup=17, hits=cpu + 1, last_ns=100 * (cpu + 1), wait_ns=5, level=3,
                    mode=1 if cpu == ncpu - 1 else 0, seen=cpu == ncpu - 1,
                    name=b"web" if cpu == ncpu - 1 else b"", hist=(cpu, 1)) for cpu in range(ncpu)]
    sys.update(fd, key, per_cpu(sys, values))
    rows = loaded.snapshot().maps[map_name]
    assert len(rows) == 1
    value = rows[0]["value"]
    assert value["cgroup"]["cgroup_id"] == 17                 # an id: not summed
    assert value["hits"] == ncpu * (ncpu + 1) // 2            # a counter: summed
    assert value["last_ns"] == 100 * ncpu                      # a timestamp: the latest
    assert value["wait_ns"] == 5 * ncpu                        # tagged memcg_bpf:counter: summed
    assert value["level"] == 3 * ncpu                          # tagged memcg_bpf:gauge: summed
    assert value["mode"] == "SHAPE_ON"                         # an enum: the first non-zero
    assert value["seen"] is True
    assert value["name"] == "web"
    assert value["hist"] == [sum(range(ncpu)), ncpu]


def test_lookup_of_unsized_map_type_is_refused(loaded: Loaded, libbpf: Libbpf) -> None:
    sys = loaded.sys
    lib = libbpf.lib
    fd = lib.bpf_map_create(MapType.RINGBUF, b"ring", 0, 0, 4096, None)
    assert fd >= 0
    try:
        with pytest.raises(UnreadableMap, match="is a RINGBUF map, whose values memcg-bpf cannot read"):
            sys.lookup(fd, b"", sys.map_info(fd))
        sys.obj_pin(fd, str(loaded.directory / "maps" / "ring"))
    finally:
        os.close(fd)
    snapshot = loaded.snapshot()
    assert snapshot.maps["ring"] == []
    assert "RINGBUF" in snapshot.notes["ring"]


def test_strings_signed_bitfields_and_maps_without_btf(loaded: Loaded, libbpf: Libbpf) -> None:
    sys = loaded.sys
    sys.update(loaded.fd("plain"), struct.pack("<I", 3), shape(name=b"db", small=-1, flags=5, mode=7))
    fd = libbpf.lib.bpf_map_create(MapType.HASH, b"raw", 4, 8, 4, None)
    assert fd >= 0
    try:
        sys.update(fd, struct.pack("<I", 1), struct.pack("<Q", 0xABCD))
        sys.obj_pin(fd, str(loaded.directory / "maps" / "raw"))
    finally:
        os.close(fd)
    snapshot = loaded.snapshot()
    value = snapshot.maps["plain"][0]["value"]
    assert value["name"] == "db"
    assert value["small"] == -1 and value["flags"] == 5
    assert value["mode"] == 7                                  # not a known enumerator: the number
    assert snapshot.maps["raw"] == [{"key": "01000000", "value": "cdab000000000000"}]
    assert snapshot.notes["raw"] == "no BTF for its keys and values: shown as hex bytes"
    assert snapshot.as_json()["notes"] == snapshot.notes


def test_only_const_volatile_globals_are_knobs(loaded: Loaded, libbpf: Libbpf, shapes_object: Path) -> None:
    with Object(libbpf, shapes_object) as fresh:
        btf = B.Btf(fresh.raw_btf())
        rodata = next(m for m in fresh.maps() if m.name.endswith(".rodata"))
        knobs = K.knobs_of(btf, bytes(rodata.initial_value()))
    assert {name: k.default for name, k in knobs.items()} == {"k_pages": 7, "k_name": "abc"}
    assert loaded.snapshot().globals == {"k_pages": 7, "k_name": "abc", "events": 0}


def metric_types(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


def test_prometheus_types_by_field(loaded: Loaded) -> None:
    loaded.sys.update(loaded.fd("plain"), struct.pack("<I", 3), shape(cgroup=17, hits=2, last_ns=5, seen=True))
    text = prom.render(loaded.snapshot())
    types = {name: typ for name, (typ, _doc) in metric_types(text).items()}
    base = "memcg_bpf_shapes_"
    assert types[base + "plain_hits"] == "counter"
    assert types[base + "plain_wait_ns"] == "counter"
    assert types[base + "plain_hist"] == "counter"
    assert types[base + "plain_last_ns"] == "gauge"
    assert types[base + "plain_level"] == "gauge"
    assert types[base + "plain_seen"] == "gauge"
    assert types[base + "events"] == "counter"
    assert types[base + "k_pages"] == "gauge"
    for absent in ("plain_cgroup", "plain_mode", "plain_name", "k_name", "____fmt", "table"):
        assert base + absent not in types
    assert f'{base}plain_hits_total{{key="3",policy="shapes"}} 2.0' in text
    assert f"# HELP {base}plain_hits_total memcg-bpf policy shapes: map plain field hits (counter)" in text


def test_textfile_is_written_atomically(loaded: Loaded, tmp_path: Path) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    path = prom.write_textfile(loaded.snapshot(), out)
    assert path == out / "memcg_bpf_shapes.prom"
    assert os.listdir(out) == ["memcg_bpf_shapes.prom"]
    assert "memcg_bpf_shapes_k_pages" in metric_types(path.read_text())


def test_label_values_are_escaped() -> None:
    path = 'a"b\\c\nd'
    snapshot = Snapshot("p", {}, {"m": [{"key": {"cgroup_id": 5, "path": path}, "value": {"n": 1}}]})
    samples = [s for f in text_string_to_metric_families(prom.render(snapshot)) for s in f.samples]
    assert [(s.labels["cgroup"], s.value) for s in samples] == [(path, 1)]



# -- damaged pins, unload while reading, --watch -------------------------------------------------

def damage(loaded: Loaded, how: str) -> None:
    d = loaded.directory
    if how == "no maps":
        shutil.rmtree(d / "maps")
    elif how == "program pin":
        loaded.sys.obj_pin(loaded.obj.program("egress").fd, str(d / "maps" / "zz_prog"))
    elif how == "garbage meta":
        (d / "meta").unlink()
        fd = loaded.sys.create_array("memcg_bpf_meta", store.META_SIZE)
        try:
            loaded.sys.update(fd, b"\0\0\0\0", b"\xff{not json".ljust(store.META_SIZE, b"\0"))
            loaded.sys.obj_pin(fd, str(d / "meta"))
        finally:
            os.close(fd)
    elif how == "meta of the wrong size":
        (d / "meta").unlink()
        loaded.sys.obj_pin(loaded.fd("plain"), str(d / "meta"))
    elif how == "no meta":
        (d / "meta").unlink()
    elif how == "no link":
        (d / "link").unlink()


@pytest.mark.parametrize("how,problem", [
    ("no maps", "maps: No such file or directory"),
    ("program pin", "maps/zz_prog is not a BPF map (it is bpf-prog)"),
    ("garbage meta", "meta is not memcg-bpf metadata"),
    ("meta of the wrong size", "meta is not memcg-bpf metadata"),
    ("no meta", "cannot open pinned object"),
    ("no link", "has no link pin"),
])
def test_damaged_pin_directory_is_one_line(loaded: Loaded, how: str, problem: str) -> None:
    damage(loaded, how)
    with pytest.raises(MemcgBpfError) as info:
        loaded.snapshot()
    assert problem in info.value.message and "\n" not in info.value.message


class UnloadedMidRead(Reader):
    """Unloads the policy (as `unload` does: the link pin first, then the rest) after reading its first map."""

    def _read_map(self, *args: Any) -> None:
        super()._read_map(*args)
        directory = self.root / NAME
        if directory.exists():
            (directory / "link").unlink()
            shutil.rmtree(directory)


def test_unload_while_reading_says_unloaded(loaded: Loaded) -> None:
    reader = UnloadedMidRead(loaded.sys, root=loaded.reader.root)
    with pytest.raises(PolicyGone, match="^policy shapes was unloaded$"):
        reader.snapshot(NAME)


def test_watch_ends_when_the_policy_is_unloaded(loaded: Loaded) -> None:
    frames: list[Snapshot] = []

    def show(snapshot: Snapshot, rates: dict[tuple[str, ...], float] | None) -> None:
        frames.append(snapshot)
        store.remove(loaded.directory)

    with pytest.raises(PolicyGone) as info:
        watch(loaded.reader, NAME, 1, show, sleep=lambda _: None)
    assert len(frames) == 1
    assert info.value.message == "policy shapes was unloaded" and info.value.exit_code != 0


def test_cgroup_names_pick_up_cgroups_created_later(tmp_path: Path) -> None:
    now = [0.0]
    names = CgroupNames(tmp_path, min_rescan=1.0, clock=lambda: now[0])
    (tmp_path / "a").mkdir()
    assert names.path(os.stat(tmp_path / "a").st_ino) == "/a"
    (tmp_path / "b").mkdir()
    b = os.stat(tmp_path / "b").st_ino
    assert names.path(b) is None            # within min_rescan of the last scan: not rescanned
    now[0] = 1.5
    assert names.path(b) == "/b"
