"""Policies attached per cgroup (kernel patch 4), through the CLI, on the real patched kernel.

One VM boot runs every step (vm_tests/guest/hierarchy.py); each test
checks one rule on the recorded result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import record, run_vm

Result = dict[str, Any]
CYCLES = 20
FIXED_DELAY = 25   # jiffies
ERROR = "memcg-bpf: error: "


def last_line(step: Result) -> str:
    return step["stderr"].strip().splitlines()[-1] if step["stderr"].strip() else ""


def ok(step: Result) -> None:
    assert step["rc"] == 0, step["stderr"]


@pytest.fixture(scope="module")
def run(kernel: Artifacts, bpf_object: Callable[..., Path], memhog: Path, policies_built: list[Path]) -> Result:
    throttle = {"keep": bpf_object("throttle"), "zero": bpf_object("throttle", "DELAY=0"),
                "fixed": bpf_object("throttle", f"DELAY={FIXED_DELAY}"),
                "on_parent": bpf_object("throttle", "DELAY=0")}
    args = {"memhog": str(memhog), "observe": str(bpf_object("observe")), "kfuncs": str(bpf_object("kfuncs")),
            "throttle": {k: str(v) for k, v in throttle.items()}, "cycles": CYCLES,
            "reclaim_async": str(bpf_object("reclaim_async")), "reclaim_probe": str(bpf_object("reclaim_probe")),
            "sleep_probe": str(bpf_object("sleep_probe"))}
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.hierarchy", json.dumps(args)], cpus=2, timeout=900)
    assert vm.exit_code == 0, vm.stderr[-6000:]
    out: Result = vm.json()
    record(kernel, "hierarchy", args, 2, out)
    assert out["cpus"] == 2, f"the guest has {out['cpus']} CPUs, not 2"
    return out


def test_siblings_run_different_policies_at_once(run: Result) -> None:
    r = run["siblings"]
    ok(r["load_a"])
    ok(r["load_b"])
    assert "loaded ta on /a" in r["load_a"]["stdout"]
    assert r["hog_rcs"] == [0, 0]
    # Each policy saw the charges of its own cgroup only, failed ones included.
    assert set(r["stats_a"]) == {"/a"}, r["stats_a"]
    assert set(r["stats_b"]) == {"/b"}, r["stats_b"]
    assert r["stats_a"]["/a"]["failed"] > 0 and r["stats_b"]["/b"]["failed"] > 0
    listed = {e["name"]: e for e in json.loads(r["list"]["stdout"])}
    assert {n: (e["cgroup"], e["allow_override"]) for n, e in listed.items()} == {
        "ta": ("/a", False), "tb": ("/b", False)}


def test_one_policy_per_cgroup(run: Result) -> None:
    step = run["siblings"]["same_cgroup"]
    assert step["rc"] == 1
    assert last_line(step) == (ERROR + "cgroup /a already has policy 'ta' attached: replace it with "
                               "'memcg-bpf load POLICY --replace ta', or run 'memcg-bpf unload ta' first")


def test_attaching_above_policies_needs_allow_override(run: Result) -> None:
    r = run["siblings"]
    assert r["root_without_override"]["rc"] == 1
    assert last_line(r["root_without_override"]) == (
        ERROR + "the root cgroup has policies attached below it ('ta' on /a, 'tb' on /b): pass --allow-override "
        "to let them keep governing their subtrees, or unload them first")
    ok(r["root_with_override"])
    ok(r["unload_all"])


def test_attaching_below_a_policy_without_override_is_refused(run: Result) -> None:
    r = run["no_override"]
    ok(r["load_strict"])
    assert r["load_below"]["rc"] == 1
    assert last_line(r["load_below"]) == (
        ERROR + "policy 'strict' on cgroup /s does not allow policies below it: reload it with '--allow-override' "
        "(memcg-bpf load ... --replace strict --allow-override) first")
    assert r["no_such_cgroup"]["rc"] == 2
    assert last_line(r["no_such_cgroup"]) == (
        ERROR + "cgroup '/s/nosuch' does not exist: create it with 'mkdir /sys/fs/cgroup/s/nosuch'")
    assert r["no_memory"]["rc"] == 2
    assert last_line(r["no_memory"]) == (
        ERROR + "cgroup '/s/x/nomem' has no memory controller: enable it with "
        "'echo +memory > /sys/fs/cgroup/s/x/cgroup.subtree_control'")
    ok(r["unload_all"])
    assert json.loads(r["list_after"]["stdout"]) == []


def test_the_governing_policy_follows_attach_replace_and_detach(run: Result) -> None:
    """Patch 9: each cgroup's governing policy, kept per cgroup, is right after every change around it."""
    r = run["governing"]
    for step in ("load_top", "load_sub", "unload_sub", "replace_top", "load_root", "unload_top2", "unload_all"):
        ok(r[step])
    assert r["hog_rcs"] == [0] * 6
    top = r["top"]
    # /g/new and /g/new/deep were made after gtop was attached to /g: governed all the same.
    assert set(top) == {"/g/old", "/g/new/deep"} and min(top.values()) > 0, top
    # gsub attached to /g/new takes /g/new/deep's charges; gtop sees none of them.
    assert set(r["sub"]) == {"/g/new/deep"}, r["sub"]
    assert r["top_with_sub"] == top
    # gsub detached: /g/new/deep is gtop's again, /g/old was never anyone else's.
    assert r["top_after_sub"]["/g/new/deep"] > top["/g/new/deep"]
    assert r["top_after_sub"]["/g/old"] == top["/g/old"]
    # The replacement governs the whole subtree at once.
    assert set(r["top2"]) == {"/g/new/deep"}, r["top2"]
    # gtop2 detached: its subtree falls to the policy at the root.
    assert r["root"].get("/g/old", 0) > 0, r["root"]


def test_only_the_limit_owners_policy_sets_the_reclaim_target(run: Result) -> None:
    r = run["authority"]
    for step in ("load_root", "load_child", "unload_child", "load_parent", "unload_all"):
        ok(r[step])
    # The limit is the parent's: a boost attached to the child only observes.
    child_only = r["child_only"]
    assert child_only["hog_rc"] == 0
    assert child_only["targets"], "no direct reclaim ran: the test proves nothing"
    assert "256" not in child_only["targets"], child_only["targets"]
    # Attached to the parent, whose limit was hit, the same policy sets it.
    parent = r["parent"]
    assert parent["hog_rc"] == 0
    assert parent["targets"].get("256", 0) > 0, parent["targets"]


def rmdir_args(obj: Path, memhog: Path, cycles: int) -> dict[str, Any]:
    return {"obj": obj, "memhog": memhog, "max_mb": 16, "hog_mb": 24, "cycles": cycles}


def check_rmdir(result: Result, cycles: int, cpus: int) -> None:
    """The rmdir_attached scenario: every cycle charged under the policy, removed the cgroup, released the link."""
    assert result["online_cpus"] == cpus, f"the guest has {result['online_cpus']} CPUs, not {cpus}"
    assert len(result["cycles"]) == cycles
    for cycle in result["cycles"]:
        assert cycle["hog_rc"] == 0 and cycle["removed"], cycle
        assert cycle["calls"] > 0, "the policy never ran for its cgroup: the cycle proves nothing"
        # Detached at rmdir: nothing charged to the dying cgroup reached it after that.
        assert cycle["calls_after_rmdir"] == cycle["calls"], cycle
    # Every CPU charged a sibling cgroup the whole time, and kept going.
    assert result["hog_rcs"] == [0] * cpus and min(result["hog_rounds"]) > 0, result


def test_removing_an_attached_cgroup_leaves_the_policy_inert(run: Result) -> None:
    r = run["rmdir_cli"]
    ok(r["load"])
    assert r["hog_rc"] == 0 and r["removed"]
    [entry] = json.loads(r["list"]["stdout"])
    assert (entry["name"], entry["cgroup"], entry["cgroup_removed"], entry["broken"]) == ("gone", "/gone", True, None)
    assert "  cgroup /gone (removed: the policy is inert; 'memcg-bpf unload gone')" in r["list_text"]["stdout"]
    ok(r["unload"])
    assert json.loads(r["list_after"]["stdout"]) == []
    check_rmdir(run["rmdir"], CYCLES, 2)
    assert run["pins_left"] in ([], ["/sys/fs/bpf/memcg-bpf"])


MIB = 1 << 20


def test_priority_policy_protects_the_service_from_its_parents_limit(run: Result) -> None:
    """Patch 5: below_low, asked of the policy on /w when /w's limit is enforced."""
    none, prio = run["protect_none"], run["protect_priority"]
    for r in (none, prio):
        assert r["holder_ready"] == "ready" and r["batch_rc"] == 0
        assert r["svc_before"]["anon"] >= 31 * MIB, r["svc_before"]
    ok(prio["load"])
    ok(prio["unload"])
    # Kernel defaults: the idle service's memory goes to swap as the batch job streams.
    assert none["svc_after"]["swap"] >= 8 * MIB, none["svc_after"]
    # Under the priority policy it stays in memory; the batch job swaps its own pages instead.
    assert prio["svc_after"]["swap"] <= 2 * MIB, prio["svc_after"]
    assert prio["svc_after"]["anon"] >= 30 * MIB, prio["svc_after"]
    [row] = json.loads(prio["stats"]["stdout"])["maps"]["cgroups"]
    assert row["key"]["path"] == "/w/svc" and row["value"]["protected"] > 0, row


def test_read_kfuncs_on_the_handlers_trusted_arguments(run: Result) -> None:
    """Patch 6: the 7.0 read kfuncs, called by a below_low handler on /kf while /kf's limit is enforced."""
    r = run["kfuncs"]
    seen = r["seen"]
    assert r["hog_rc"] == 0
    assert seen["calls"] > 0, "below_low never ran: the test proves nothing"
    assert (seen["target_id"], seen["memcg_id"]) == (r["parent_id"], r["child_id"])
    assert 0 < seen["usage"] <= (r["max_mb"] + 1) * MIB
    # The flushed anon counter lags; the largest any call saw is within the limit.
    assert r["stat_reads"] > 0
    assert 0 < seen["anon_max"] <= (r["max_mb"] + 1) * MIB, seen
    assert seen["anon"] <= (r["max_mb"] + 1) * MIB, seen
    assert seen["max_events"] > 0 and seen["pgfault"] > 0
    assert seen["root_usage"] >= seen["usage"] and seen["got_usage"] > 0
    # Indices from BPF can be anything: no warning, ULONG_MAX.
    assert seen["bad_state"] == seen["bad_event"] == seen["bad_memevent"] == 2**64 - 1


def test_high_delay_sets_the_memory_high_throttle(run: Result) -> None:
    """Patch 7: the policy governing the cgroup over memory.high chooses how long its tasks sleep."""
    keep, zero, fixed = run["throttle_keep"], run["throttle_zero"], run["throttle_fixed"]
    for r in (keep, zero, fixed):
        assert r["hog_rc"] == 0 and r["high_events"] > 0, r
        assert r["seen"]["calls"] > 0, "high_delay never ran: the test proves nothing"
        assert r["seen"]["memcg_id"] == r["seen"]["over_high_id"] == r["child_id"]
    # The kernel's own delay: the task slept (an fentry program counts schedule_timeout_killable()).
    assert keep["seen"]["kernel_delay_max"] > 0 and keep["seen"]["slept_calls"] > 0, keep
    # 0 jiffies: never put to sleep; a fixed delay: every sleep is exactly that long.
    assert zero["seen"]["slept_calls"] == 0, zero
    assert fixed["seen"]["slept_calls"] > 0, fixed
    assert fixed["seen"]["slept_jiffies"] == FIXED_DELAY * fixed["seen"]["slept_calls"], fixed


def test_a_childs_policy_cannot_lift_its_parents_memory_high(run: Result) -> None:
    r = run["throttle_on_parent"]
    assert r["hog_rc"] == 0 and r["high_events"] > 0, r
    # The parent is over its high; the policy attached below it is not asked, and the task is throttled.
    assert r["seen"]["calls"] == 0, r
    assert r["seen"]["slept_calls"] > 0, r


# -- reclaim a policy asks for (patch 8) ---------------------------------------------------------
def reclaim_async_args(obj: Path, probe: Path, memhog: Path, target: str = "own", nr_pages: int = 64) -> Result:
    return {"obj": obj, "probe": probe, "memhog": memhog, "max_mb": 32, "hog_mb": 48, "target": target,
            "nr_pages": nr_pages}


def proactive_rows(result: Result) -> list[Result]:
    return [row for row in result["reclaims"] if row["proactive"]]


def check_reclaim_in_charging_task(r: Result) -> None:
    """Every request was accepted, and every proactive reclaim ran in the task that charged, in its cgroup."""
    seen, child = r["seen"], r["ids"]["child"]
    assert r["hog"]["rc"] == 0
    assert seen["calls"] > 0 and seen["ok"] == seen["calls"], seen
    rows = proactive_rows(r)
    assert rows, "no proactive reclaim ran: the request was never served"
    for row in rows:
        # The probe's view: the charging task (memhog, in /ra/c), not a kernel thread, reclaimed /ra/c.
        assert (row["runner_cgroup"], row["target_cgroup"], row["kthread"], row["last_pid"]) == (
            child, child, 0, r["hog"]["pid"]), row
    # So its time is inside the cgroup's own CPU time (cpu.stat), where the CPU controller sees it.
    reclaim_usec = sum(row["ns"] for row in rows) // 1000
    assert 0 < reclaim_usec <= r["child"]["cpu"]["usage_usec"], (reclaim_usec, r["child"]["cpu"])


def test_reclaim_async_is_done_by_the_charging_task(run: Result) -> None:
    for name in ("reclaim_async_own_64", "reclaim_async_child_64"):
        r = run[name]
        check_reclaim_in_charging_task(r)
        # Reclaimed ahead of the limit: the charges never failed into direct reclaim.
        assert r["child"]["events"]["max"] == 0, r["child"]["events"]
        # Served as asked: requests made before a return to user space add up, and a served one
        # is one request or more (a request pending when memhog exits is never served).
        rows = proactive_rows(r)
        assert sum(row["calls"] for row in rows) <= r["seen"]["ok"]
        assert 0 < sum(row["asked"] for row in rows) <= 64 * r["seen"]["ok"], rows


def test_reclaim_async_refuses_cgroups_outside_the_policys_subtree(run: Result) -> None:
    for name in ("reclaim_async_parent_64", "reclaim_async_sibling_64"):
        r = run[name]
        seen = r["seen"]
        assert r["hog"]["rc"] == 0
        assert seen["calls"] > 0 and seen["enoent"] == seen["calls"], (name, seen)
        assert not proactive_rows(r), r["reclaims"]
        # Nothing reclaimed ahead: the limit was enforced by direct reclaim, as without the policy.
        assert r["child"]["events"]["max"] > 0, r["child"]["events"]
    seen = run["reclaim_async_own_0"]["seen"]
    assert seen["calls"] > 0 and seen["einval"] == seen["calls"], seen
    assert not proactive_rows(run["reclaim_async_own_0"])


def test_proactive_policy_keeps_charges_out_of_direct_reclaim(run: Result) -> None:
    none, pro = run["proactive_none"], run["proactive"]
    ok(pro["load"])
    ok(pro["stats"])
    ok(pro["unload"])
    assert none["hog"]["rc"] == 0 and pro["hog"]["rc"] == 0
    # Without a policy 128 MiB through a 64 MiB limit fails charges into direct reclaim hundreds of times.
    assert none["parent"]["events"]["max"] >= 100, none["parent"]["events"]
    assert not proactive_rows(none)
    # With proactive at 75 %, at most a tenth of that.
    assert pro["parent"]["events"]["max"] * 10 <= none["parent"]["events"]["max"], (
        pro["parent"]["events"], none["parent"]["events"])
    rows = proactive_rows(pro)
    assert rows
    for row in rows:
        # Done by memhog in /pa/job, for /pa, where the limit is.
        assert (row["runner_cgroup"], row["target_cgroup"], row["kthread"]) == (
            pro["ids"]["job"], pro["ids"]["parent"], 0), row
    [slot] = json.loads(pro["stats"]["stdout"])["maps"]["cgroups"]
    assert slot["key"]["path"] == "/pa"
    assert slot["value"]["requests"] > 0 and slot["value"]["refused"] == 0, slot
    assert sum(row["calls"] for row in rows) <= slot["value"]["requests"]


def test_priority_policy_throttles_only_the_batch_side_for_memory_high(run: Result) -> None:
    r = run["spare_high"]
    for label in ("none_svc", "priority_svc", "priority_batch"):
        assert r[f"hog_{label}"]["rc"] == 0, label
    for label in ("priority_svc", "priority_batch"):
        ok(r[f"load_{label}"])
        ok(r[f"unload_{label}"])
    # Without a policy the service sleeps for its parent's memory.high (an independent fentry
    # probe on schedule_timeout_killable(), by the sleeping task's cgroup).
    assert r["slept_none_svc"]["calls"] > 0, r["slept_none_svc"]
    # With priority on the parent, the selected service never sleeps for it; the batch side still does.
    assert r["slept_priority_svc"]["calls"] == 0, r["slept_priority_svc"]
    assert r["slept_priority_batch"]["calls"] > 0, r["slept_priority_batch"]
    [slot] = json.loads(r["stats_priority_svc"]["stdout"])["maps"]["cgroups"]
    assert slot["key"]["path"] == "/ph/svc" and slot["value"]["unthrottled"] > 0, slot
