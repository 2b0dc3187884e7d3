"""The runtime's libbpf: found without the test-kernel build, and logging that survives many Libbpf objects."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.runtime import locate
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.libbpf import Libbpf, LibbpfError, Object
from memcg_bpf.paths import REPO_ROOT


def test_logs_survive_other_libbpf_objects(libbpf: Libbpf, tmp_path: Path) -> None:
    """A second Libbpf made and dropped must not take libbpf's (process-wide) log away from the first."""
    other = Libbpf(libbpf.path)
    del other
    gc.collect()
    missing = tmp_path / "missing.bpf.o"
    with pytest.raises(LibbpfError) as exc:
        Object(libbpf, missing)
    assert str(missing) in exc.value.log, exc.value.log


def runtime_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMCG_BPF_LIBBPF"}
    return {**env, "MEMCG_BPF_CACHE": str(tmp_path / "cache"), **extra}


def test_runtime_never_looks_at_the_kernel_build(tmp_path: Path) -> None:
    """With an empty cache and Debian 12's libbpf 1.1 the runtime says what to do, builds and installs nothing.

    (The old lookup went through the test-kernel cache: it would unpack the kernel source here.)
    """
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "libbpf", "show"], cwd=REPO_ROOT,
                          env=runtime_env(tmp_path), capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("memcg-bpf: error: no libbpf >= 1.2 found")
    assert "run 'memcg-bpf libbpf build' once" in proc.stderr
    assert not (tmp_path / "cache").exists(), "the runtime wrote into the cache"


def test_runtime_uses_the_cached_install(libbpf: Libbpf, tmp_path: Path) -> None:
    """An install in the cache (what 'memcg-bpf libbpf build' leaves) is found by version, newest first."""
    for version in ("1.3.0", "1.5.0"):
        lib = tmp_path / "cache" / "libbpf" / version / "lib"
        lib.mkdir(parents=True)
        (lib / "libbpf.so").symlink_to(libbpf.path)
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "libbpf", "show", "--json"], cwd=REPO_ROOT,
                          env=runtime_env(tmp_path), capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path}/cache/libbpf/1.5.0/lib/libbpf.so" in proc.stdout


def test_too_old_libbpf_is_refused_in_one_line() -> None:
    system = locate.system_libbpf()
    if system is None or system[0] >= locate.MIN_LIBBPF:
        pytest.skip("this machine has no libbpf older than 1.2")
    with pytest.raises(MemcgBpfError) as exc:
        Libbpf(system[1])
    assert "memcg-bpf needs >= 1.2: run 'memcg-bpf libbpf build'" in exc.value.message
