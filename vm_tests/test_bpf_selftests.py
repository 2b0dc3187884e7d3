"""The series' selftests in the kernel's own harness: `test_progs -t memcg_ops` in the VM.

tools/testing/selftests/bpf/prog_tests/memcg_ops.c comes with the series
(memcg_bpf.testbed.bpf_selftests builds a test_progs that holds only it) and
runs on the patched test kernel, as a maintainer would run it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from memcg_bpf.paths import cache_dir
from memcg_bpf.testbed import bpf_selftests
from memcg_bpf.testbed.kernel.build import Artifacts

from .conftest import run_vm

# What the subtests cover (prog_tests/memcg_ops.c); each must run and pass.
SUBTESTS = ("verifier", "registration", "link_update", "reclaim_target", "governing", "rmdir", "reentry")


@pytest.fixture(scope="module")
def test_progs(kernel: Artifacts) -> Path:
    return bpf_selftests.build(kernel, cache_dir())


def test_test_progs_memcg_ops_passes_in_the_vm(kernel: Artifacts, test_progs: Path) -> None:
    command = f"cd {shlex.quote(str(test_progs))} && ./test_progs -v -t {bpf_selftests.TEST}"
    vm = run_vm(kernel, ["sh", "-c", command], timeout=600)
    outcome = bpf_selftests.parse(vm.stdout)
    failed = {name: status for name, status in outcome.subtests.items() if status != "OK"}
    assert vm.exit_code == 0 and outcome.failed == 0 and not failed, (failed, vm.stdout[-6000:])
    assert outcome.passed == 1 and outcome.skipped == 0
    missing = [name for name in SUBTESTS if name not in outcome.subtests]
    assert not missing, f"subtests that did not run: {missing}; ran {sorted(outcome.subtests)}"
    assert outcome.subtests_passed == len(outcome.subtests)
