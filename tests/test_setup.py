"""scripts/setup works for a new user: Debian's own python (PEP 668), a fresh checkout, no pyenv on PATH."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from memcg_bpf.paths import REPO_ROOT


def test_the_default_venv_is_not_committed() -> None:
    proc = subprocess.run(["git", "check-ignore", "-q", ".venv/bin/python"], cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, ".venv/ must be in .gitignore"


@pytest.mark.slow  # 12-25 s here: pip fetches the test dependencies (matplotlib, mypy, ...)
def test_setup_makes_a_debian_venv_and_a_second_run_only_checks(fresh_checkout: Path, plain_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**plain_env, "MEMCG_BPF_VENV": str(venv)}
    started = time.monotonic()
    first = subprocess.run(["scripts/setup"], cwd=fresh_checkout, env=env, capture_output=True, text=True,
                           check=False, timeout=1800)
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-4000:]
    assert "installing the memcg-bpf Python package" in first.stderr

    help_ = subprocess.run([str(venv / "bin" / "memcg-bpf"), "--help"], cwd=tmp_path, env=plain_env,
                           capture_output=True, text=True, check=False)
    assert help_.returncode == 0 and "memcg_ops" in help_.stdout, help_.stderr
    # The venv is Debian's python, and memcg_bpf comes from this checkout (editable), not another one.
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import sys, memcg_bpf, pytest, mypy; print(sys.base_prefix); print(memcg_bpf.__file__)"],
                           cwd=tmp_path, env=plain_env, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    base_prefix, module = probe.stdout.split()
    assert base_prefix == "/usr"
    assert Path(module) == fresh_checkout / "memcg_bpf" / "__init__.py"

    started = time.monotonic()
    second = subprocess.run(["scripts/setup"], cwd=fresh_checkout, env=env, capture_output=True, text=True,
                            check=False, timeout=600)
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stderr == "", "a second run must only check"
    print(f"setup: {first_seconds:.1f}s from scratch, {second_seconds:.1f}s again")
