"""The memcg-bpf CLI inside the VM: load, stats, list, unload, and its errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import run_vm

GUEST = "vm_tests.guest.cli_flow"


def flow(kernel: Artifacts, memhog: Path, policy: str, *knobs: str, observe: Path | None = None,
         watch: bool = False) -> dict[str, Any]:
    args = {"policy": policy, "memhog": str(memhog), "knobs": list(knobs), "observe": str(observe or ""),
            "watch": watch}
    vm = run_vm(kernel, ["python3", "-m", GUEST, json.dumps(args)])
    assert vm.exit_code == 0, vm.stderr
    return vm.json()


def metric_samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_telemetry_end_to_end(kernel: Artifacts, memhog: Path, policies_built: list[Path]) -> None:
    r = flow(kernel, memhog, "telemetry", watch=True)
    assert r["load"]["rc"] == 0, r["load"]["stderr"]
    assert r["hog_rc"] == 0
    # stats --json: failed charges of the test cgroup, shown with its path.
    stats = json.loads(r["stats_json"]["stdout"])
    assert stats["policy"] == "telemetry"
    assert set(stats) == {"policy", "globals", "maps"}
    rows = [row for row in stats["maps"]["cgroups"] if row["key"]["path"] == "/demo"]
    assert len(rows) == 1 and rows[0]["key"]["cgroup_id"] == r["cgroup_id"]
    demo = rows[0]["value"]
    assert demo["failed"] > 0 and demo["charged"] > 0
    assert demo["calls"] == demo["failed"] + demo["charged"]
    assert sum(demo["reclaim_log2_pages"]) == demo["failed"]
    assert stats["globals"] == {"dropped_calls": 0}
    # The table shows only the slots in use: the cgroups that charged (a handful), not 4096.
    assert 0 < len(stats["maps"]["cgroups"]) < 20
    # stats --prometheus parses, with the same number for the same cgroup.
    samples = metric_samples(r["stats_prometheus"]["stdout"])
    failed = [s for s in samples if s.name == "memcg_bpf_telemetry_cgroups_failed_total" and s.labels["cgroup"] == "/demo"]
    assert [s.value for s in failed] == [demo["failed"]]
    assert "/demo (id" in r["stats_table"]["stdout"]
    # list showed it with its kernel objects; after unload nothing is left.
    listed = json.loads(r["list_loaded"]["stdout"])
    assert [e["name"] for e in listed] == ["telemetry"]
    assert listed[0]["struct_ops_map_id"] in r["loaded_objects"]["struct_ops_maps"]
    after_run = json.loads(r["list_after_run"]["stdout"])[0]
    assert after_run["programs"][0]["run_cnt"] > 0
    assert r["unload"]["rc"] == 0
    assert json.loads(r["list_unloaded"]["stdout"]) == []
    assert r["after"] == r["before"], "struct_ops map or programs left in the kernel"
    assert r["pins_left"] == []
    # stats --watch printed frames with rates while memory was charged, and Ctrl-C ended it cleanly.
    frames = re.split(r"\n--- \d\d:\d\d:\d\d ---\n", r["watch"])
    assert len(frames) >= 4, r["watch"]
    assert all("/demo (id" in frame for frame in frames[:-1])
    assert any("calls" in line and "/s)" in line for frame in frames[1:] for line in frame.splitlines()), \
        "no rate shown while memory was charged"
    assert r["watch"].rstrip().endswith("[exit 0]")


def test_reclaim_boost_raises_the_reclaim_target(kernel: Artifacts, memhog: Path, policies_built: list[Path],
                                                 bpf_object: Callable[..., Path]) -> None:
    r = flow(kernel, memhog, "reclaim_boost", "reclaim_pages=256", "cgroup_ids=CGROUP",
             observe=bpf_object("observe"))
    assert r["load"]["rc"] == 0, r["load"]["stderr"]
    assert r["hog_rc"] == 0
    stats = json.loads(r["stats_json"]["stdout"])
    rows = stats["maps"]["boosted"]
    assert [row["key"]["path"] for row in rows] == ["/demo"]
    value = rows[0]["value"]
    assert value["boosted"] > 0
    # 4 KiB faults: every failed charge asked for fewer than 256 pages, so every one was boosted.
    assert value["failed_charges"] == value["boosted"]
    assert value["pages_targeted"] == 256 * value["boosted"]
    # And reclaim really got 256 pages as its target (seen by fentry, independently of the policy).
    assert set(r["reclaim_targets"]) == {"256"}
    # Each boosted call was followed by exactly one round of reclaim with that target.
    assert r["reclaim_targets"]["256"] == value["boosted"]
    assert stats["globals"]["total_boosted"] == value["boosted"]
    listed = json.loads(r["list_loaded"]["stdout"])[0]
    assert listed["knobs"]["reclaim_pages"] == 256
    assert listed["knobs"]["cgroup_ids"][0] == r["cgroup_id"]
    assert json.loads(r["list_unloaded"]["stdout"]) == []
    assert r["after"] == r["before"]


def error_case(kernel: Artifacts, case: str, **args: Any) -> dict[str, Any]:
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.cli_errors", case, json.dumps(args, default=str)])
    assert vm.exit_code == 0, vm.stderr
    result = vm.json()
    assert result["pins_left"] == [], "a failed command left pins behind"
    assert result["objects_left"] is False, "a failed command left a struct_ops map or program in the kernel"
    return result


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_replace_swaps_the_policy_behind_the_same_link(kernel: Artifacts, policies_built: list[Path]) -> None:
    r = error_case(kernel, "replace")
    assert r["first"]["rc"] == 0, r["first"]["stderr"]
    [before] = r["before"]
    assert r["other"]["rc"] == 0, r["other"]["stderr"]
    assert r["other"]["stdout"].startswith("loaded reclaim_boost on / (reclaim_pages=64, ")
    assert "replacing telemetry); pinned at /sys/fs/bpf/memcg-bpf/reclaim_boost" in r["other"]["stdout"]
    [other] = r["after_other"]
    assert other["name"] == "reclaim_boost" and other["knobs"]["reclaim_pages"] == 64
    # The same kernel link now runs another struct_ops map: updated, not re-created.
    assert other["link_id"] == before["link_id"]
    assert other["struct_ops_map_id"] != before["struct_ops_map_id"]
    assert r["same"]["rc"] == 0, r["same"]["stderr"]
    [same] = r["after_same"]
    assert same["name"] == "reclaim_boost" and same["knobs"]["reclaim_pages"] == 256
    assert same["link_id"] == before["link_id"]
    assert same["struct_ops_map_id"] not in (before["struct_ops_map_id"], other["struct_ops_map_id"])
    assert r["missing"]["rc"] == 1
    assert last_line(r["missing"]["stderr"]) == ("memcg-bpf: error: no policy named 'nothing' is loaded "
                                                 "(loaded: reclaim_boost); see 'memcg-bpf list'")
    assert r["cleanup"]["rc"] == 0
