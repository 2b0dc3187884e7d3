"""Bad input on the host, whose kernel has no memcg_ops: what the command line alone tells, and the
one line that says the kernel lacks memcg_ops. Every other bad input is a row of
vm_tests/bad_inputs.py, run inside the VM on the patched kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.paths import REPO_ROOT
from memcg_bpf.runtime.store import ROOT as PIN_ROOT
from memcg_bpf.runtime.preflight import kernel_has_memcg_ops


def cli(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    return proc.returncode, proc.stderr


@pytest.fixture(autouse=True)
def nothing_left_behind():  # type: ignore[no-untyped-def]
    existed = PIN_ROOT.exists()
    yield
    assert PIN_ROOT.exists() == existed, f"{PIN_ROOT} was left behind"


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.mark.skipif(kernel_has_memcg_ops(), reason="this host runs a kernel with memcg_ops")
@pytest.mark.parametrize("command", [["load", "telemetry"], ["list"], ["stats", "telemetry"], ["unload", "--all"]])
def test_kernel_without_memcg_ops(command: list[str]) -> None:
    code, err = cli(*command)
    assert code == 1
    assert last_line(err) == (f"memcg-bpf: error: the running kernel ({os.uname().release}) has no memcg_ops "
                              "struct_ops: boot a kernel with the memcg-bpf patches, or try it in the test VM: "
                              "memcg-bpf vm run -- memcg-bpf ...")


def test_unknown_policy() -> None:
    code, err = cli("load", "nosuch")
    assert code == 2
    assert "unknown policy 'nosuch': bundled policies are noop, priority, proactive, reclaim_boost, telemetry" in last_line(err)


def test_not_a_bpf_object(tmp_path: Path) -> None:
    fake = tmp_path / "fake.bpf.o"
    fake.write_text("not an ELF file\n")
    code, err = cli("load", str(fake))
    assert code == 2
    assert f"{fake} is not a BPF object file" in last_line(err)


def test_unload_needs_a_name_or_all() -> None:
    code, err = cli("unload")
    assert code == 2
    assert "name one policy or pass --all" in err


def test_bad_policy_name() -> None:
    code, err = cli("load", "telemetry", "--name", "a/b")
    assert code == 2
    assert "bad policy name 'a/b'" in err
