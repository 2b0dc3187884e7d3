"""memcg_ops on the real patched kernel: each test boots a fresh VM."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

Scenario = Callable[..., Any]
BpfObject = Callable[..., Path]

LIMIT_MB = 24
HOG_MB = 64


def observe(scenario: Scenario, obj: Path, memhog: Path, **extra: Any) -> Any:
    args = {"obj": obj, "memhog": memhog, "max_mb": LIMIT_MB, "hog_mb": HOG_MB, **extra}
    result = scenario("observe", args)
    assert result["hog_rc"] == 0, "memhog failed inside the cgroup (OOM?)"
    return result


def test_hook_sees_successful_and_failed_charges(scenario: Scenario, bpf_object: BpfObject,
                                                 memhog: Path) -> None:
    result = observe(scenario, bpf_object("observe"), memhog)
    stats = result["stats"]
    assert stats["done"] > 0, "no call with charge_done == true"
    assert stats["failed"] > 0, "no call with charge_done == false under memory.max"
    assert stats["calls"] == stats["done"] + stats["failed"]
    # The failed charges are the ones memory.events counts as 'max'.
    assert "max 0\n" not in result["memory_events"]
    # Every failed charge was the child's, limited by the child's own memory.max.
    child = result["child_id"]
    assert {(memcg, over) for memcg, over, _ in result["failed_by"]} == {(child, child)}


def test_mem_over_limit_is_null_when_charge_done(scenario: Scenario, bpf_object: BpfObject,
                                                 memhog: Path) -> None:
    stats = observe(scenario, bpf_object("observe"), memhog)["stats"]
    assert stats["done"] > 0
    assert stats["done_with_over"] == 0, "mem_over_limit was non-NULL on a successful charge"
    assert stats["failed"] > 0
    assert stats["failed_no_over"] == 0, "mem_over_limit was NULL on a failed charge"


def test_mem_over_limit_is_the_limiting_ancestor(scenario: Scenario, bpf_object: BpfObject,
                                                 memhog: Path) -> None:
    result = observe(scenario, bpf_object("observe"), memhog, parent_limit=True)
    pairs = {(memcg, over) for memcg, over, _ in result["failed_by"]}
    assert pairs == {(result["child_id"], result["parent_id"])}


# (knobs, THP faults?, expected reclaim targets; None: the same as the pages requested)
OVERRIDES = {
    "64-honoured": ({"write": 1, "nr_pages": 64, "retval": 1}, False, {64}),
    "512-honoured": ({"write": 1, "nr_pages": 512, "retval": 1}, False, {512}),
    "1-honoured": ({"write": 1, "nr_pages": 1, "retval": 1}, True, {1}),
    "0-ignored": ({"write": 1, "nr_pages": 0, "retval": 1}, False, None),
    "513-ignored": ({"write": 1, "nr_pages": 513, "retval": 1}, False, None),
    "return-0-ignored": ({"write": 1, "nr_pages": 64, "retval": 0}, False, None),
}


@pytest.mark.parametrize("case", list(OVERRIDES))
def test_nr_pages_override_reaches_reclaim(case: str, scenario: Scenario, bpf_object: BpfObject,
                                           memhog: Path) -> None:
    knobs, thp, expected = OVERRIDES[case]
    result = observe(scenario, bpf_object("observe"), memhog, knobs=knobs, thp=thp)
    requested = {int(k) for k in result["requested"]}
    reclaimed = {int(k) for k in result["reclaimed"]}
    assert result["stats"]["reclaim_calls"] > 0, "try_to_free_mem_cgroup_pages() never ran"
    if expected is None:
        # Ignored: reclaim got exactly the sizes of the failed charges.
        assert reclaimed == requested
    else:
        assert reclaimed == expected
        # The override changed something: the charges asked for other sizes.
        assert requested - expected, f"charges only requested {requested}; the test proves nothing"


@pytest.mark.parametrize("first,second", [("link", "link"), ("legacy", "legacy"), ("link", "legacy")])
def test_second_registration_fails_with_eexist(first: str, second: str, scenario: Scenario,
                                               bpf_object: BpfObject, memhog: Path) -> None:
    def obj(kind: str) -> Path:
        return bpf_object("observe", "LEGACY") if kind == "legacy" else bpf_object("observe")
    result = scenario("exclusive", {"first": obj(first), "second": obj(second), "memhog": memhog})
    assert result["first_errno"] == 0
    assert result["second_errno"] == 17, "second registration did not fail with EEXIST"
    assert result["reattach_errno"] == 0, "registration after unregistration failed"
    assert result["hog_rc"] == 0
    assert result["second_calls"] > 0, "the handler registered after unregistration never ran"


def test_unregister_while_charging(scenario: Scenario, bpf_object: BpfObject, memhog: Path) -> None:
    args = {"obj": bpf_object("observe"), "memhog": memhog, "max_mb": 16, "hog_mb": 24,
            "seconds": 20, "iterations": 100}
    result = scenario("unregister_stress", args, cpus=2, timeout=400)
    assert result["errors"] == []
    assert result["hog_rcs"] == [0, 0], "a charging process failed while handlers came and went"
    assert all(rounds > 0 for rounds in result["hog_rounds"])
    assert result["calls"] > 0


@pytest.mark.parametrize("field", ["memcg", "gfp_mask", "mem_over_limit", "reclaim_options", "charge_done"])
def test_verifier_rejects_writes_to_other_fields(field: str, scenario: Scenario, bpf_object: BpfObject) -> None:
    result = scenario("load_fails", {"obj": bpf_object("bad_write", f"FIELD={field}")})
    assert result["loaded"] is False
    assert result["errno"] == "EACCES"
    assert "memcg_ops: write to try_charge_memcg at off" in result["log"]
    assert "only nr_pages (off 16 size 8) is writable" in result["log"]


def test_verifier_rejects_writes_through_pointers(scenario: Scenario, bpf_object: BpfObject) -> None:
    # Same offset as nr_pages, but in struct mem_cgroup: the seed's check let this through.
    result = scenario("load_fails", {"obj": bpf_object("bad_write", "THROUGH_MEMCG")})
    assert result["loaded"] is False
    assert result["errno"] == "EACCES"
    assert "memcg_ops: only try_charge_memcg->nr_pages is writable" in result["log"]


def test_verifier_rejects_sleepable_handler(scenario: Scenario, bpf_object: BpfObject) -> None:
    result = scenario("load_fails", {"obj": bpf_object("sleepable")})
    assert result["loaded"] is False
    assert result["errno"] == "EINVAL"
    assert "attach to unsupported member try_charge_memcg of struct memcg_ops" in result["log"]


def test_verifier_accepts_nr_pages_write(scenario: Scenario, bpf_object: BpfObject) -> None:
    # The control for the rejections above: the observe program writes nr_pages and loads.
    result = scenario("load_fails", {"obj": bpf_object("observe")})
    assert result["loaded"] is True
