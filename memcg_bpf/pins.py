"""Where a loaded policy lives: /sys/fs/bpf/memcg-bpf/NAME/{link,meta,maps/...}.

bpffs holds only BPF objects, so the metadata (object, knobs, load time,
program ids) is JSON stored in a one-entry BPF array map pinned as `meta`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .bpfsys import Sys
from .errors import MemcgBpfError, UsageError
from .preflight import BPFFS

ROOT = BPFFS / "memcg-bpf"
META_SIZE = 8192
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,47}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"bad policy name {name!r}: use letters, digits, '_' and '-' (at most 48)")
    return name


def policy_dir(name: str) -> Path:
    return ROOT / check_name(name)


def names() -> list[str]:
    if not ROOT.is_dir():
        return []
    # Staged directories ("+staged-NAME") are not policies yet.
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and _NAME.match(p.name))


def require_loaded(name: str) -> Path:
    path = policy_dir(name)
    if not path.is_dir():
        loaded = ", ".join(names()) or "none"
        raise UsageError(f"no policy named {name!r} is loaded (loaded: {loaded}); see 'memcg-bpf list'")
    return path


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
    fd = sys.obj_get(str(directory / "meta"))
    try:
        raw = sys.lookup(fd, b"\0\0\0\0", META_SIZE) or b""
    finally:
        os.close(fd)
    try:
        return json.loads(raw.rstrip(b"\0").decode())
    except ValueError as exc:
        raise MemcgBpfError(f"{directory}/meta is not memcg-bpf metadata: remove {directory} by hand") from exc


def remove(directory: Path) -> None:
    """Unpin everything below directory (unpinning the link unregisters the policy)."""
    link = directory / "link"
    if link.exists():
        link.unlink()
    if directory.exists():
        shutil.rmtree(directory)
    if ROOT.is_dir() and not any(ROOT.iterdir()):
        ROOT.rmdir()
