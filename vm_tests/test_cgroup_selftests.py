"""The kernel's own memcg selftests give the same results with and without the series.

tools/testing/selftests/cgroup (test_core, test_kmem, test_memcontrol) run in
the VM on ext4 with swap (vm_tests/guest/cgroup_selftests.py), three times:
on the unpatched test kernel, on the patched one with no policy, and on the
patched one with the observe-only telemetry policy attached at the root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memcg_bpf.paths import cache_dir
from memcg_bpf.testbed import cgroup_selftests
from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import record, run_vm

# Builds the unpatched test kernel (shared with the quick benchmark), about 6 minutes on a cold cache.
pytestmark = pytest.mark.slow

# The tests that need what the VM now gives them (page cache on a block
# filesystem, swap, IPv6 on lo): without, every one of them failed or skipped.
NEEDS_EXT4_AND_SWAP = ("test_memcg_current_peak", "test_memcg_min", "test_memcg_low", "test_memcg_high",
                       "test_memcg_max", "test_memcg_swap_max_peak", "test_memcg_sock")
# They fail on the unpatched test kernel too: test_percpu_basic finds memory.current 3 MB above the
# percpu counter for 1,000 cgroups (1 MB allowed; the lock debugging of the test kernel makes the
# structures of a cgroup larger); test_memcg_reclaim failed in 2 of 9 runs (both while kernels were
# building on the same two cores).
KNOWN_FAILING = {("test_kmem", "test_kmem_basic"), ("test_kmem", "test_percpu_basic"),
                 ("test_memcontrol", "test_memcg_high_sync"), ("test_memcontrol", "test_memcg_reclaim")}


@pytest.fixture(scope="module")
def selftests(kernel: Artifacts) -> Path:
    source = Path(kernel.manifest["source"])
    return cgroup_selftests.build(source, f"{source}:{kernel.manifest['kernel_version']}", cache_dir())


def run(kernel: Artifacts, selftests: Path, policy: str | None) -> dict[str, Any]:
    args = {"dir": str(selftests), "policy": policy, "known_failing": sorted(t for _, t in KNOWN_FAILING)}
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.cgroup_selftests", json.dumps(args)], timeout=1800)
    assert vm.exit_code == 0, vm.stderr[-4000:]
    out: dict[str, Any] = vm.json()
    record(kernel, "cgroup-selftests", args, 2, out)
    assert out["filesystem"] == "ext2/ext3"     # stat -f names ext4 by its magic, shared with ext2/3
    assert set(out["results"]) == set(cgroup_selftests.PROGRAMS)
    return out


@pytest.fixture(scope="module")
def runs(kernel: Artifacts, baseline_kernel: Artifacts, selftests: Path,
         policies_built: list[Path]) -> dict[str, dict[str, Any]]:
    return {"unpatched": run(baseline_kernel, selftests, None),
            "patched": run(kernel, selftests, None),
            "patched+telemetry": run(kernel, selftests, "telemetry")}


def unexpected_failures(out: dict[str, Any]) -> dict[str, list[str]]:
    return {program: failing for program, tests in out["results"].items()
            if (failing := [t for t, status in tests.items() if status == "fail" and (program, t) not in KNOWN_FAILING])}


def test_same_results_without_the_series_with_it_and_with_an_observing_policy(
        runs: dict[str, dict[str, Any]]) -> None:
    """Outside KNOWN_FAILING, every test passes (or skips) alike on the three kernels.

    A program with an unexpected failure runs up to three times in its VM and
    a test that passed once counts (vm_tests/guest/cgroup_selftests.py): some
    of these tests depend on timing. KNOWN_FAILING fail on the unpatched test
    kernel as well, so their results compare nothing.
    """
    reference = runs["unpatched"]["results"]
    assert sum(len(tests) for tests in reference.values()) >= 30, reference
    for name, out in runs.items():
        assert unexpected_failures(out) == {}, (name, out["attempts"])
        for program, tests in reference.items():
            assert set(out["results"][program]) == set(tests), (name, program)
            differ = {t: (status, out["results"][program][t]) for t, status in tests.items()
                      if (program, t) not in KNOWN_FAILING and out["results"][program][t] != status}
            assert not differ, f"{name}: {program}: {differ} (unpatched, {name})"


def test_the_page_cache_and_swap_tests_run_and_pass(runs: dict[str, dict[str, Any]]) -> None:
    memcontrol = runs["unpatched"]["results"]["test_memcontrol"]
    failing = {t: memcontrol.get(t) for t in NEEDS_EXT4_AND_SWAP if memcontrol.get(t) != "pass"}
    assert not failing, failing


def test_the_observing_policy_saw_the_selftests_charge(runs: dict[str, dict[str, Any]]) -> None:
    out = runs["patched+telemetry"]
    assert out["load"]["rc"] == 0 and out["unload"]["rc"] == 0, (out["load"]["stderr"], out["unload"]["stderr"])
    stats = json.loads(out["calls"]["stdout"])
    assert sum(row["value"]["calls"] for row in stats["maps"]["cgroups"]) > 10_000
