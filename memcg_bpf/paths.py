"""Where the project keeps its files and its cache.

The policies (bpf_progs/) and the patch series (kernel_patch/) live at the top
of the repository. An installed wheel carries them as package data in
memcg_bpf/_data/ (pyproject.toml maps them there); data_dir() finds either.
The benchmark's guest package (bench/) and the VM tests exist only in a
source checkout: checkout_dir() says so in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository root when running from a checkout (editable install, PYTHONPATH): the package lives
# directly below it. In an installed wheel this is site-packages.
REPO_ROOT = PACKAGE_DIR.parent


def data_dir(name: str) -> Path:
    """bpf_progs or kernel_patch: the copy bundled in the installed package, else the checkout's."""
    bundled = PACKAGE_DIR / "_data" / name
    if bundled.is_dir():
        return bundled
    checkout = REPO_ROOT / name
    if (REPO_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    raise MemcgBpfError(f"{name}/ is missing from the memcg-bpf package ({bundled}): reinstall it "
                        f"('pip install --force-reinstall memcg-bpf') or run from a git checkout")


def checkout_dir(name: str, what: str) -> Path:
    """A directory that only a source checkout has (bench/, vm_tests/), or a one-line error naming the fix."""
    path = REPO_ROOT / name
    if (REPO_ROOT / "pyproject.toml").is_file() and path.is_dir():
        return path
    raise MemcgBpfError(f"{what} needs a source checkout ({name}/ is not installed with the package): "
                        "run it from a git clone of memcg-bpf after 'scripts/setup'")


def cache_dir() -> Path:
    """The cache root: $MEMCG_BPF_CACHE, else $XDG_CACHE_HOME/memcg-bpf."""
    env = os.environ.get("MEMCG_BPF_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "memcg-bpf"


def bundled_policy_dir() -> Path:
    """The bundled policies (*.bpf.c) and their header memcg_bpf.h."""
    return data_dir("bpf_progs")


def bundled_patch_dir() -> Path:
    """The patch series and config fragment that come with this version of memcg-bpf."""
    return data_dir("kernel_patch")


def patch_dir() -> Path:
    """The kernel patch series and config fragment: $MEMCG_BPF_PATCH_DIR, else the bundled ones."""
    env = os.environ.get("MEMCG_BPF_PATCH_DIR")
    return Path(env) if env else bundled_patch_dir()
