"""`memcg-bpf apply` in the VM: loads, keeps, replaces with no gap, unloads, and refuses a bad file whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import run_vm


@pytest.fixture(scope="module")
def run(kernel: Artifacts, policies_built: list[Path]) -> dict[str, Any]:
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.apply_flow"])
    assert vm.exit_code == 0, vm.stderr
    out: dict[str, Any] = vm.json()
    return out


def lines(step: dict[str, Any]) -> list[str]:
    return step["stdout"].strip().splitlines()


def test_dry_run_plans_and_changes_nothing(run: dict[str, Any]) -> None:
    assert run["dry_run"]["rc"] == 0, run["dry_run"]["stderr"]
    assert lines(run["dry_run"]) == ["would:", "  load fleet (telemetry on /)",
                                     "  load batch-boost (reclaim_boost on /batch)"]
    assert run["dry_run"]["links"] == {}


def test_apply_loads_then_a_second_run_changes_nothing(run: dict[str, Any]) -> None:
    first, again = run["first"], run["again"]
    assert first["rc"] == 0, first["stderr"]
    assert lines(first) == ["loaded fleet (telemetry on /)", "loaded batch-boost (reclaim_boost on /batch)"]
    assert set(first["links"]) == {"fleet", "batch-boost"}
    assert again["rc"] == 0 and lines(again)[-1].startswith("nothing to do: 2 policies loaded as ")
    assert again["links"] == first["links"]


def test_a_changed_knob_is_replaced_on_the_same_link(run: dict[str, Any]) -> None:
    step = run["knob_changed"]
    assert step["rc"] == 0, step["stderr"]
    assert lines(step) == ["replaced batch-boost (reclaim_boost on /batch, no gap)"]
    # BPF_LINK_UPDATE: the same link now runs the new map.
    assert step["links"] == run["first"]["links"]


def test_a_bad_entry_changes_nothing(run: dict[str, Any]) -> None:
    step = run["bad_knob"]
    assert step["rc"] == 2
    message = step["stderr"].strip().splitlines()[-1]
    assert "bad_knob.toml:7: policy 'batch-boost': unknown knob 'reclaim_pagez'" in message, message
    assert message.endswith("nothing was changed")
    assert step["links"] == run["first"]["links"]


def test_policies_no_longer_listed_are_unloaded(run: dict[str, Any]) -> None:
    assert lines(run["fleet_dropped"]) == ["unloaded fleet"]
    assert set(run["fleet_dropped"]["links"]) == {"batch-boost"}
    assert lines(run["empty"]) == ["unloaded batch-boost"]
    assert json.loads(run["list_after"]["stdout"]) == []
