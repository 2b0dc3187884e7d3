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

from .bpfsys import NotAMap, Sys
from .errors import MemcgBpfError, UsageError
from .maptypes import MapType
from .preflight import BPFFS

ROOT = BPFFS / "memcg-bpf"
META_SIZE = 8192
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,47}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"bad policy name {name!r}: use letters, digits, '_' and '-' (at most 48)")
    return name


class NotLoaded(UsageError):
    """No policy of that name is pinned."""


def policy_dir(name: str, root: Path = ROOT) -> Path:
    return root / check_name(name)


def names(root: Path = ROOT) -> list[str]:
    if not root.is_dir():
        return []
    # Staged directories ("+staged-NAME") are not policies yet.
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def require_loaded(name: str, root: Path = ROOT) -> Path:
    path = policy_dir(name, root)
    if not path.is_dir():
        loaded = ", ".join(names(root)) or "none"
        raise NotLoaded(f"no policy named {name!r} is loaded (loaded: {loaded}); see 'memcg-bpf list'")
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
    not_meta = MemcgBpfError(f"{directory}/meta is not memcg-bpf metadata: remove {directory} by hand")
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


def remove(directory: Path) -> None:
    """Unpin everything below directory (unpinning the link unregisters the policy)."""
    link = directory / "link"
    if link.exists():
        link.unlink()
    if directory.exists():
        shutil.rmtree(directory)
    if ROOT.is_dir() and not any(ROOT.iterdir()):
        ROOT.rmdir()
