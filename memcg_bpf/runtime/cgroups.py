"""cgroup2 paths, ids and files: a cgroup's id is the inode number of its directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from memcg_bpf.errors import UsageError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_id(path: str | Path) -> int:
    return os.stat(path).st_ino


def flat_keyed(path: Path) -> dict[str, int]:
    """A flat keyed file ("key value" lines: memory.events, memory.stat, cpu.stat) as integers."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def pressure(path: Path) -> dict[str, dict[str, float]]:
    """A PSI file (memory.pressure): {"some": {"avg10", "avg60", "avg300", "total" (usec)}, "full": ...}."""
    out = {}
    for line in path.read_text().splitlines():
        kind, *fields = line.split()
        out[kind] = {key: float(value) for key, value in (f.split("=", 1) for f in fields)}
    return out


def cgroup2_root(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path:
    """Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return CGROUP_ROOT
    for line in lines:
        head, sep, tail = line.partition(" - ")
        if sep and tail.split()[:1] == ["cgroup2"]:
            return Path(head.split()[4])
    return CGROUP_ROOT


def resolve(spec: str, root: Path | None = None) -> Path:
    """'/sys/fs/cgroup/a', '/a' or 'a' -> the cgroup directory, which must lie under the cgroup2 mount."""
    root = root or cgroup2_root()
    path = Path(spec)
    if not (path.is_absolute() and path.is_relative_to(root)):
        path = root / spec.lstrip("/")
    real = path.resolve()
    if real != root and root not in real.parents:
        raise UsageError(f"cgroup {spec!r} is outside the cgroup2 mount {root}: name a cgroup under it")
    return real


class CgroupNames:
    """Cgroup id -> path relative to the cgroup2 root ('/a/b'), built lazily.

    An id not seen yet (a cgroup created since) rescans the tree, at most
    once every min_rescan seconds: ids of removed cgroups stay unknown.
    """

    def __init__(self, root: Path | None = None, min_rescan: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root or cgroup2_root()
        self.min_rescan = min_rescan
        self.clock = clock
        self._names: dict[int, str] | None = None
        self._scanned = 0.0

    def _scan(self) -> dict[int, str]:
        names: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            try:
                names[os.stat(dirpath).st_ino] = "/" if rel == "." else "/" + rel
            except OSError:
                continue
        return names

    def path(self, cgid: int) -> str | None:
        if self._names is None or (cgid not in self._names and self.clock() - self._scanned >= self.min_rescan):
            self._names = self._scan()
            self._scanned = self.clock()
        return self._names.get(cgid)
