"""cgroup2 paths and ids: a cgroup's id is the inode number of its directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_id(path: str | Path) -> int:
    return os.stat(path).st_ino


def resolve(spec: str) -> Path:
    """'/sys/fs/cgroup/a', '/a' or 'a' -> the cgroup directory."""
    path = Path(spec)
    if not path.is_absolute() or not str(path).startswith(str(CGROUP_ROOT)):
        path = CGROUP_ROOT / spec.lstrip("/")
    return path


class CgroupNames:
    """Cgroup id -> path relative to the cgroup2 root ('/a/b'), built lazily.

    An id not seen yet (a cgroup created since) rescans the tree, at most
    once every min_rescan seconds: ids of removed cgroups stay unknown.
    """

    def __init__(self, root: Path = CGROUP_ROOT, min_rescan: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
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
