"""`memcg-bpf exporter` in the VM, scraped over loopback and parsed with prometheus_client's parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import run_vm


@pytest.fixture(scope="module")
def run(kernel: Artifacts, memhog: Path, policies_built: list[Path]) -> dict[str, Any]:
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.exporter_flow", json.dumps({"memhog": str(memhog)})])
    assert vm.exit_code == 0, vm.stderr
    out: dict[str, Any] = vm.json()
    return out


def samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found: dict[str, list[Any]], name: str, **labels: str) -> float:
    [match] = [s for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    return float(match.value)


def test_the_policy_and_the_cgroups_are_served(run: dict[str, Any]) -> None:
    assert run["load"]["rc"] == 0 and run["hog_rc"] == 0
    found = samples(run["with_policy"])
    # The policy's telemetry, as stats --prometheus names it.
    assert value(found, "memcg_bpf_telemetry_cgroups_failed_total", cgroup="/demo") > 0
    # memory.events of /demo: memhog went past memory.max.
    assert value(found, "memcg_bpf_cgroup_memory_events_total", cgroup="/demo", event="max") > 0
    assert value(found, "memcg_bpf_cgroup_memory_current_bytes", cgroup="/demo") >= 0
    assert value(found, "memcg_bpf_cgroup_memory_stall_seconds_total", cgroup="/demo", kind="some") >= 0
    assert value(found, "memcg_bpf_exporter_errors_total") == 0


def test_an_unloaded_policy_leaves_the_next_scrape(run: dict[str, Any]) -> None:
    found = samples(run["without_policy"])
    assert not any(name.startswith("memcg_bpf_telemetry_") for name in found)
    assert value(found, "memcg_bpf_cgroup_memory_events_total", cgroup="/demo", event="max") > 0


def test_a_taken_port_is_one_line_and_exit_1(run: dict[str, Any]) -> None:
    second = run["second_exporter"]
    assert second["rc"] == 1
    assert second["stderr"].strip().splitlines()[-1] == (
        "memcg-bpf: error: cannot listen on 127.0.0.1:9431: Address already in use: pick another --port")
    assert run["exporter_rc"] == 0, run["exporter_stderr"]
