"""bench/chargepath.c: a kmem run starts clean after a run the OOM killer stopped mid-round."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from memcg_bpf.paths import REPO_ROOT

LEFTOVER = Path("/tmp/chargepath.kmem")


def test_kmem_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    binary = tmp_path / "chargepath"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary), str(REPO_ROOT / "bench" / "chargepath.c")],
                   check=True)
    shutil.rmtree(LEFTOVER, ignore_errors=True)
    LEFTOVER.mkdir()
    for n in (0, 1, 7):
        (LEFTOVER / str(n)).touch()
    try:
        proc = subprocess.run([str(binary), "kmem", "16", "2"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["units"] == 16
        assert not LEFTOVER.exists()
    finally:
        shutil.rmtree(LEFTOVER, ignore_errors=True)
