"""Helpers for code that runs inside the test VM (tests, benchmarks, the demo): swap and cgroups."""

from __future__ import annotations

import subprocess
from pathlib import Path

from memcg_bpf.runtime.cgroups import CGROUP_ROOT

ZRAM = Path("/sys/block/zram0")


def swap_on_zram(size: str = "1G") -> None:
    """Swap on /dev/zram0 (lz4), so reclaim under memory.max has somewhere to put anonymous memory."""
    if "/dev/zram0" in Path("/proc/swaps").read_text():
        return
    (ZRAM / "comp_algorithm").write_text("lz4")
    (ZRAM / "disksize").write_text(size)
    subprocess.run(["mkswap", "/dev/zram0"], check=True, capture_output=True)
    subprocess.run(["swapon", "/dev/zram0"], check=True)


def enter_cgroup(cgroup: Path) -> None:
    """Move the calling process into cgroup (use as a preexec_fn)."""
    (cgroup / "cgroup.procs").write_text("0")


def make_cgroup(name: str, parent: Path = CGROUP_ROOT, **files: str) -> Path:
    """mkdir a cgroup and write its files: memory__max="24M" writes memory.max."""
    path = parent / name
    path.mkdir()
    for key, value in files.items():
        (path / key.replace("__", ".")).write_text(value)
    return path
