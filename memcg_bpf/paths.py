"""Where the project keeps its files and its cache."""

from __future__ import annotations

import os
from pathlib import Path

# The repository root: the package lives directly below it.
REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The cache root: $MEMCG_BPF_CACHE, else $XDG_CACHE_HOME/memcg-bpf."""
    env = os.environ.get("MEMCG_BPF_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "memcg-bpf"


def patch_dir() -> Path:
    """The kernel patch series and config fragment."""
    return Path(os.environ.get("MEMCG_BPF_PATCH_DIR", REPO_ROOT / "kernel_patch"))
