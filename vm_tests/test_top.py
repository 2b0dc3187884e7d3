"""`memcg-bpf top` in the VM: one frame while a limited cgroup charges, as JSON and as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import run_vm


@pytest.fixture(scope="module")
def run(kernel: Artifacts, memhog: Path, policies_built: list[Path]) -> dict[str, Any]:
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.top_flow", json.dumps({"memhog": str(memhog)})])
    assert vm.exit_code == 0, vm.stderr
    out: dict[str, Any] = vm.json()
    return out


def test_a_frame_shows_rates_usage_limits_and_pressure(run: dict[str, Any]) -> None:
    assert run["load"]["rc"] == 0 and run["hog_rc"] == 0
    assert run["json"]["rc"] == 0, run["json"]["stderr"]
    frame = json.loads(run["json"]["stdout"])
    demo = [row for row in frame["rows"] if row["cgroup"] == "/demo"]
    assert len(demo) == 1, frame
    [row] = demo
    assert row["rates"]["failed"] > 0 and row["rates"]["calls"] >= row["rates"]["failed"], row
    assert (row["high"], row["max"]) == (None, 16 << 20)     # memory.high "max" is shown as None
    assert 0 < row["current"] <= 17 << 20
    assert set(row["psi_avg10"]) == {"some", "full"}
    # Most pressure first: /demo, the only cgroup over its limit, leads.
    assert frame["rows"][0]["cgroup"] == "/demo", frame


def test_the_text_frame(run: dict[str, Any]) -> None:
    text = run["text"]["stdout"].splitlines()
    assert run["text"]["rc"] == 0, run["text"]["stderr"]
    assert text[0] == "memcg-bpf top: policy telemetry, rates over 1 s, most memory pressure first"
    assert text[1].split()[:5] == ["cgroup", "calls/s", "charged/s", "failed/s", "pages_requested/s"]
    assert text[2].split()[0] == "/demo" and text[2].split()[6:8] == ["max", "16.0M"], text[2]
    print(f"top --once (text) took {run['text']['seconds']} s, --json {run['json']['seconds']} s")


def test_top_of_a_policy_not_loaded(run: dict[str, Any]) -> None:
    assert run["not_loaded"]["rc"] == 1   # as for stats and unload (README, bad inputs)
    assert run["not_loaded"]["stderr"].strip().splitlines()[-1] == (
        "memcg-bpf: error: no policy named 'telemetry' is loaded (loaded: none); see 'memcg-bpf list'")
