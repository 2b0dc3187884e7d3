"""Where loaded policies live, and how they appear and disappear in one step.

    /sys/fs/bpf/memcg-bpf/NAME/{link, meta, maps/...}     a loaded policy
    /sys/fs/bpf/memcg-bpf/+staging-PID-NAME/              a load in progress
    /sys/fs/bpf/memcg-bpf/+unloading-PID-NAME/            an unload in progress

bpffs holds only BPF objects, so the metadata (object, knobs, load time,
program ids) is JSON stored in a one-entry BPF array map pinned as `meta`.

A load pins everything under a staging directory and renames it to NAME
(bpffs renames in one step); an unload renames NAME away first, then
unpins. Loads and unloads hold an exclusive flock on the bpffs mount's root
directory, so they run one at a time; whatever one of them leaves when it
is killed (a '+' directory) belongs to a dead process, is shown by `list`
as broken, and is removed by the next load or unload. A registration is
only ever made while its link is about to be pinned by a live process, or
is named by a pin.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

from memcg_bpf.bpf.syscalls import NotAMap, Sys
from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.bpf.maptypes import MapType
from memcg_bpf.runtime.preflight import BPFFS

ROOT = BPFFS / "memcg-bpf"
META_SIZE = 8192
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,47}")
_TRANSIENT = re.compile(r"\+(staging|unloading)-(\d+)-(.+)")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(f"bad policy name {name!r}: use letters, digits, '_' and '-' (at most 48, "
                         "not starting with '-')")
    return name


class NotLoaded(MemcgBpfError):
    """No policy of that name is pinned (a state of the machine, not a usage error: exit 1)."""


@dataclass(frozen=True)
class Entry:
    """A directory under ROOT: a loaded policy, or what an interrupted load or unload left."""

    name: str
    directory: Path
    state: str          # "loaded", "staging" (interrupted load) or "unloading" (interrupted unload)
    pid: int | None = None


def entries(root: Path = ROOT) -> list[Entry]:
    """Everything under ROOT that memcg-bpf made, sorted by name."""
    try:
        children = list(root.iterdir())
    except FileNotFoundError:
        return []
    except PermissionError as exc:
        raise MemcgBpfError(f"cannot read {root}: permission denied; run memcg-bpf as root") from exc
    found = []
    for path in children:
        transient = _TRANSIENT.fullmatch(path.name)
        if transient:
            found.append(Entry(transient.group(3), path, transient.group(1), int(transient.group(2))))
        elif _NAME.fullmatch(path.name):
            found.append(Entry(path.name, path, "loaded"))
    return sorted(found, key=lambda e: (e.name, e.state))


def names(root: Path = ROOT) -> list[str]:
    return [e.name for e in entries(root) if e.state == "loaded"]


def policy_dir(name: str, root: Path = ROOT) -> Path:
    return root / check_name(name)


def require_loaded(name: str, root: Path = ROOT) -> Path:
    path = policy_dir(name, root)
    if not path.is_dir():
        loaded = ", ".join(names(root)) or "none"
        raise NotLoaded(f"no policy named {name!r} is loaded (loaded: {loaded}); see 'memcg-bpf list'")
    return path


def staging_dir(name: str) -> Path:
    return ROOT / f"+staging-{os.getpid()}-{check_name(name)}"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def locked() -> Iterator[None]:
    """Hold the load/unload lock; SIGTERM and SIGHUP unwind (and clean up) like Ctrl-C meanwhile."""
    try:
        fd = os.open(BPFFS, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise MemcgBpfError(f"cannot open {BPFFS}: {exc.strerror}; run memcg-bpf as root") from exc
    saved: dict[int, Any] = {}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if threading.current_thread() is threading.main_thread():
            for sig in (int(signal.SIGTERM), int(signal.SIGHUP)):
                saved[sig] = signal.signal(sig, _raise_interrupt)
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(fd)   # releases the lock


def collect_garbage() -> list[Entry]:
    """Remove what interrupted loads and unloads left (call with the lock held)."""
    removed = [e for e in entries() if e.state != "loaded"]
    for entry in removed:
        discard(entry)
    return removed


def discard(entry: Entry) -> None:
    """Remove an entry; a loaded policy is renamed away first, so it stops being loaded in one step."""
    remove(unpublish(entry.directory) if entry.state == "loaded" else entry.directory)


def write_meta(sys: Sys, directory: Path, meta: dict[str, Any]) -> None:
    data = json.dumps(meta, sort_keys=True).encode()
    if len(data) >= META_SIZE:
        raise MemcgBpfError(f"policy metadata is {len(data)} bytes, more than {META_SIZE - 1}")
    fd = sys.create_array("memcg_bpf_meta", META_SIZE)
    try:
        sys.update(fd, b"\0\0\0\0", data.ljust(META_SIZE, b"\0"))
        sys.obj_pin(fd, str(directory / "meta"))
    finally:
        os.close(fd)


def read_meta(sys: Sys, directory: Path) -> dict[str, Any]:
    not_meta = MemcgBpfError(f"{directory}/meta is not memcg-bpf metadata")
    try:
        fd, info = sys.open_map(str(directory / "meta"))
    except NotAMap:
        raise not_meta from None
    try:
        if info.type != MapType.ARRAY or info.key_size != 4 or info.value_size != META_SIZE:
            raise not_meta
        raw = sys.lookup(fd, b"\0\0\0\0", info) or b""
    finally:
        os.close(fd)
    try:
        meta = json.loads(raw.rstrip(b"\0").decode())
    except ValueError as exc:
        raise not_meta from exc
    if not isinstance(meta, dict):
        raise not_meta
    return meta


def crash_point(step: str) -> None:
    """Fault injection for the tests: die by SIGKILL here if MEMCG_BPF_KILL_AT names this step,
    or stop here if MEMCG_BPF_PAUSE_AT does: while the file MEMCG_BPF_PAUSE_WHILE exists (at most
    MEMCG_BPF_PAUSE_SECONDS, default 300), or for MEMCG_BPF_PAUSE_SECONDS (default 3) without it.

    vm_tests/test_misuse.py kills loads and unloads at every step this way,
    and holds one load in its critical section until another is waiting
    for the lock (polling from outside cannot hit the short windows under
    TCG, and a fixed pause is too short on a slow machine).
    """
    if os.environ.get("MEMCG_BPF_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("MEMCG_BPF_PAUSE_AT") == step:
        hold = os.environ.get("MEMCG_BPF_PAUSE_WHILE")
        if not hold:
            time.sleep(float(os.environ.get("MEMCG_BPF_PAUSE_SECONDS", "3")))
            return
        deadline = time.monotonic() + float(os.environ.get("MEMCG_BPF_PAUSE_SECONDS", "300"))
        while os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.02)


# The steps crash_point() names, in order.
LOAD_STEPS = ("load:maps-pinned", "load:meta-pinned", "load:registered", "load:link-pinned", "load:renamed")
UNLOAD_STEPS = ("unload:renamed-away", "unload:link-unpinned")


def remove(directory: Path) -> None:
    """Unpin everything below directory (unpinning the link first unregisters the policy)."""
    try:
        (directory / "link").unlink()
    except FileNotFoundError:
        pass
    crash_point("unload:link-unpinned")
    shutil.rmtree(directory, ignore_errors=False, onerror=_gone_is_fine)
    try:
        ROOT.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST):
            raise


def _gone_is_fine(function: Any, path: str, excinfo: Any) -> None:
    if not isinstance(excinfo[1], FileNotFoundError):
        raise excinfo[1]


def unpublish(directory: Path) -> Path:
    """Rename a loaded policy away in one step, so that it is not 'loaded' any more; then remove it."""
    gone = ROOT / f"+unloading-{os.getpid()}-{directory.name}"
    directory.rename(gone)
    crash_point("unload:renamed-away")
    return gone
