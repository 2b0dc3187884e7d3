"""The package type-checks: mypy over memcg_bpf/."""

from __future__ import annotations

import subprocess
import sys

from memcg_bpf.paths import REPO_ROOT


def test_mypy_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "memcg_bpf"],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
