"""`memcg-bpf vm run`: the guest environment, exit codes, splats and timeouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.testbed.kernel import kconfig
from memcg_bpf.testbed.kernel.build import Artifacts
from memcg_bpf.paths import REPO_ROOT

from .conftest import run_vm


def vm_run(kernel: Artifacts, *argv: str, cwd: Path = REPO_ROOT,
           options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "memcg_bpf", "vm", "run", "--kernel", str(kernel.bzimage),
                           *options, "--", *argv], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


GUEST_CHECKS = r"""
set -e
echo "uid=$(id -u) cwd=$(pwd)"
grep -q ' / 9p ro' /proc/mounts && echo root-9p-ro
grep -q ' /tmp tmpfs ' /proc/mounts && touch /tmp/x && echo tmp-writable
touch written-by-guest && echo cwd-writable
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts && grep -qw memory /sys/fs/cgroup/cgroup.subtree_control && echo cgroup2-memory
grep -q ' /sys/fs/bpf bpf ' /proc/mounts && echo bpffs
grep -q ' /sys/kernel/debug debugfs ' /proc/mounts && grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts && echo tracing
echo to-stderr >&2
exit 7
"""


def test_guest_environment_and_exit_code(kernel: Artifacts, tmp_path: Path) -> None:
    proc = vm_run(kernel, "sh", "-c", GUEST_CHECKS, cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout.splitlines() == [f"uid=0 cwd={tmp_path}", "root-9p-ro", "tmp-writable", "cwd-writable",
                                        "cgroup2-memory", "bpffs", "tracing"]
    assert "to-stderr" in proc.stderr and "to-stderr" not in proc.stdout
    assert (tmp_path / "written-by-guest").exists(), "the guest's write to the working directory is not on the host"


def test_kernel_splat_fails_the_run(kernel: Artifacts) -> None:
    proc = vm_run(kernel, "sh", "-c", "echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT; echo survived")
    assert proc.returncode == 125, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("memcg-bpf: error: kernel splat: WARNING: CPU: "), last
    assert "lkdtm" in proc.stderr, "the splat's excerpt is not quoted"


def test_timeout_fails_the_run(kernel: Artifacts) -> None:
    proc = vm_run(kernel, "sleep", "600", options=("--timeout", "8"))
    assert proc.returncode == 124
    assert proc.stderr.strip().splitlines()[-1] == "memcg-bpf: error: the VM timed out after 8s"


def test_clean_run_has_no_splat(kernel: Artifacts) -> None:
    result = run_vm(kernel, ["true"])
    assert result.exit_code == 0


@pytest.mark.parametrize("cpus", range(1, 9))
def test_guest_has_the_cpus_it_asked_for(kernel: Artifacts, cpus: int) -> None:
    proc = vm_run(kernel, "sh", "-c", "nproc; cat /sys/devices/system/cpu/online", options=("--cpus", str(cpus)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(cpus), "0" if cpus == 1 else f"0-{cpus - 1}"]


def test_kernel_is_preemptible_with_jump_labels(kernel: Artifacts) -> None:
    config = kconfig.read_config(kernel.directory / "config")
    assert config.get("CONFIG_PREEMPT") == "y" and config.get("CONFIG_PREEMPT_RCU") == "y"
    assert config.get("CONFIG_JUMP_LABEL") == "y"
    proc = vm_run(kernel, "uname", "-v")
    assert proc.returncode == 0, proc.stderr
    # The running kernel says so too: "#1 SMP PREEMPT ..."
    assert " SMP PREEMPT " in f" {proc.stdout.strip()} ", proc.stdout
