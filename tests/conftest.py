"""Host-only fixtures: the bundled policies compiled against the test kernel's BTF."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from memcg_bpf.compile import Toolchain, build_objects
from memcg_bpf.kernel.api import find_built
from memcg_bpf.libbpf import Libbpf
from memcg_bpf.paths import REPO_ROOT, cache_dir
from memcg_bpf.toolchain import find_clang


@pytest.fixture(scope="session")
def libbpf() -> Libbpf:
    return Libbpf(find_built().libbpf)


@pytest.fixture(scope="session")
def policy_objects(libbpf: Libbpf) -> dict[str, Path]:
    kernel = find_built()
    sources = sorted((REPO_ROOT / "bpf_progs").glob("*.bpf.c"))
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
