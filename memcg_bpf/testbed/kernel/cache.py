"""What the kernel cache holds, when each entry was last used, and pruning.

The cache has two kinds of entries (see build.py):
- trees/VARIANT: a patched source tree with its build output, about 4.5 GB,
  kept so the next build of that variant is incremental;
- kernels/KEY: the artifacts of one build (bzImage, vmlinux, libbpf,
  bpftool), about 170 MB, found again by the key of their inputs.
An entry records its last use in a file of its own, so pruning can drop
what nothing has built or booted for a while.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError

LAST_USED = "last-used"
KINDS = {"trees": "tree", "kernels": "kernel"}
DAY = 86400.0
GIB = 1 << 30
# Free space a build needs: a new tree is a copy of the source plus its build output.
NEW_TREE_BYTES = 8 * GIB
TREE_BYTES = 2 * GIB


@dataclass(frozen=True)
class Entry:
    kind: str          # "tree" or "kernel"
    path: Path
    variant: str
    size: int          # bytes
    last_used: float   # seconds since the epoch

    def as_json(self, now: float) -> dict[str, object]:
        return {"kind": self.kind, "path": str(self.path), "variant": self.variant, "bytes": self.size,
                "idle_days": round((now - self.last_used) / DAY, 1)}


def mark_used(directory: Path) -> None:
    """Record that a tree or a kernel was used now."""
    (directory / LAST_USED).write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def last_used(directory: Path) -> float:
    """The last recorded use; entries from before this file existed count from their newest top-level file."""
    marker = directory / LAST_USED
    if marker.is_file():
        return marker.stat().st_mtime
    times = [p.stat().st_mtime for p in directory.iterdir() if not p.is_symlink()]
    return max(times, default=directory.stat().st_mtime)


def disk_bytes(directory: Path) -> int:
    out = subprocess.run(["du", "-sb", str(directory)], capture_output=True, text=True, check=False).stdout
    return int(out.split()[0]) if out.strip() else 0


def variant_of(kind: str, directory: Path) -> str:
    if kind == "tree":
        return directory.name
    manifest = directory / "manifest.json"
    try:
        return str(json.loads(manifest.read_text())["variant"])
    except (OSError, ValueError, KeyError):
        return "(unfinished build)"


def entries(cache: Path) -> list[Entry]:
    """Every tree and kernel in the cache, least recently used first."""
    found = []
    for sub, kind in KINDS.items():
        root = cache / sub
        if not root.is_dir():
            continue
        for directory in root.iterdir():
            if directory.is_dir() and not directory.is_symlink():
                found.append(Entry(kind, directory, variant_of(kind, directory), disk_bytes(directory),
                                   last_used(directory)))
    return sorted(found, key=lambda e: e.last_used)


def idle(found: list[Entry], days: float, now: float) -> list[Entry]:
    """The entries unused for at least `days` days."""
    return [e for e in found if now - e.last_used >= days * DAY]


def remove(entry: Entry) -> None:
    # Renamed first, so an interrupted removal never leaves a half entry under a name a build would use.
    doomed = entry.path.with_name(entry.path.name + ".pruning")
    entry.path.rename(doomed)
    shutil.rmtree(doomed)


def check_free_space(cache: Path, new_tree: bool) -> None:
    """Refuse a build that would fill the disk, before it starts, naming the fix."""
    cache.mkdir(parents=True, exist_ok=True)
    need = NEW_TREE_BYTES if new_tree else TREE_BYTES
    free = shutil.disk_usage(cache).free
    if free < need:
        raise MemcgBpfError(f"only {free / GIB:.1f} GiB free under {cache}, and this kernel build needs about "
                            f"{need / GIB:.0f} GiB: free space with 'memcg-bpf kernel prune' "
                            f"(see 'memcg-bpf kernel cache' for what it holds)")


def human(size: int) -> str:
    for unit, factor in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"
