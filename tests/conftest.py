"""Host-only fixtures: the bundled policies compiled against the test kernel's BTF; a fresh checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from memcg_bpf.runtime.compile import Toolchain, build_objects
from memcg_bpf.testbed.kernel.api import find_built
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.paths import REPO_ROOT, bundled_policy_dir, cache_dir
from memcg_bpf.runtime.toolchain import find_clang


@pytest.fixture(scope="session")
def libbpf() -> Libbpf:
    return Libbpf(find_built().libbpf)


@pytest.fixture(scope="session")
def policy_objects(libbpf: Libbpf) -> dict[str, Path]:
    kernel = find_built()
    sources = sorted(bundled_policy_dir().glob("*.bpf.c"))
    objects = build_objects(libbpf, sources, kernel.vmlinux, cache_dir(), Toolchain(find_clang(), kernel.include))
    return {o.name.removesuffix(".bpf.o"): o for o in objects}


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    """A bpffs of its own, mounted in a temporary directory: pins made in a test go with it."""
    mount = tmp_path / "bpffs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


# -- a fresh checkout and Debian's python, for the set-up and packaging tests -----------------------
DEBIAN_PYTHON = Path("/usr/bin/python3")
# What a new user's shell has: no pyenv, no virtualenv, no PYTHONPATH.
PLAIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def plain_env() -> dict[str, str]:
    """A new user's environment: PATH without pyenv or a venv, no PYTHON*; HOME, the locale, and pip's
    and the proxies' settings kept (so that pip reaches PyPI as it does here)."""
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
            or k.startswith("PIP_") or k.lower() in ("http_proxy", "https_proxy", "no_proxy")}
    return {**keep, "PATH": PLAIN_PATH}


@pytest.fixture
def fresh_checkout(tmp_path: Path) -> Path:
    """What 'git clone' of the working tree gives: every tracked or untracked, not ignored file
    (so uncommitted changes are tested too), and nothing ignored (.venv, build/, *.egg-info, caches)."""
    if not DEBIAN_PYTHON.is_file():
        pytest.skip(f"{DEBIAN_PYTHON} is missing: these tests check set-up with Debian's python")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode()
    dest = tmp_path / "memcg-bpf"
    for name in filter(None, listed.split("\0")):
        src = REPO_ROOT / name
        if not src.exists():  # deleted in the working tree
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest
