"""Fixtures for tests that boot the patched kernel: one fresh VM per test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from memcg_bpf.runtime.compile import Toolchain, compile_bpf, vmlinux_h
from memcg_bpf.testbed.kernel.api import VARIANTS, build
from memcg_bpf.testbed.kernel.build import Artifacts
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.paths import REPO_ROOT, cache_dir
from memcg_bpf.progress import Progress
from memcg_bpf.runtime.toolchain import find_clang
from memcg_bpf.testbed.vm.splat import find_splats

HERE = Path(__file__).resolve().parent


class Kernels:
    """The patched kernel's variants (memcg_bpf.testbed.kernel.api.VARIANTS), each built once per session."""

    def __init__(self) -> None:
        self.built: dict[str, Artifacts] = {}

    def __getitem__(self, variant: str) -> Artifacts:
        if variant not in self.built:
            self.built[variant], _ = build(overrides=VARIANTS[variant], progress=Progress())
        return self.built[variant]


@pytest.fixture(scope="session")
def kernels() -> Kernels:
    return Kernels()


@pytest.fixture(scope="session")
def kernel(kernels: Kernels) -> Artifacts:
    """The patched test kernel, built once (later sessions hit the cache)."""
    return kernels["test"]


@pytest.fixture(scope="session")
def baseline_kernel() -> Artifacts:
    """The test kernel's config without the series (VARIANTS["test"], --baseline)."""
    artifacts, _ = build(baseline=True, overrides=VARIANTS["test"], progress=Progress())
    return artifacts


@pytest.fixture(scope="session")
def debug_kernel(kernels: Kernels) -> Artifacts:
    """The test kernel plus KASAN and kmemleak (VARIANTS["debug"])."""
    return kernels["debug"]


@pytest.fixture(scope="session")
def objects_dir() -> Path:
    # Under the cache, not /tmp: the guest sees the host root, but its /tmp is a fresh tmpfs.
    return cache_dir() / "vm-tests"


@pytest.fixture(scope="session")
def bpf_object(kernel: Artifacts, objects_dir: Path) -> Callable[..., Path]:
    """Compile vm_tests/bpf/NAME.bpf.c (with -D defines) against the built kernel's BTF."""
    bpf = Libbpf(kernel.libbpf)
    headers = vmlinux_h(bpf, kernel.vmlinux, cache_dir())
    tools = Toolchain(find_clang(), kernel.include)

    def compile_one(name: str, *defines: str) -> Path:
        suffix = "".join("-" + d.replace("=", "_").lower() for d in defines)
        return compile_bpf(HERE / "bpf" / f"{name}.bpf.c", objects_dir, headers, tools,
                           defines=defines, name=name + suffix)
    return compile_one


@pytest.fixture(scope="session")
def memhog(objects_dir: Path) -> Path:
    objects_dir.mkdir(parents=True, exist_ok=True)
    target = objects_dir / "memhog"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(target), str(HERE / "helpers" / "memhog.c")], check=True)
    return target


@pytest.fixture(scope="session")
def policies_built(kernel: Artifacts) -> list[Path]:
    """Compile the bundled policies on the host (fast) against the kernel's BTF; the guest finds them in the cache."""
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "build", "--btf", str(kernel.vmlinux), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "MEMCG_BPF_LIBBPF": str(kernel.libbpf)})
    assert proc.returncode == 0, proc.stderr
    return [Path(p) for p in json.loads(proc.stdout)]


@dataclass
class VmResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"the guest printed nothing on stdout; stderr:\n{self.stderr}"
        return json.loads(lines[-1])


def run_vm(kernel: Artifacts, argv: list[str], *, cpus: int = 2, timeout: float = 300,
           extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> VmResult:
    """`memcg-bpf vm run` as a user would call it; a splat or timeout fails the test."""
    env = dict(os.environ, MEMCG_BPF_LIBBPF=str(kernel.libbpf), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    cmd = [sys.executable, "-m", "memcg_bpf", "vm", "run", "--kernel", str(kernel.bzimage),
           "--cpus", str(cpus), "--timeout", str(timeout), *extra, "--", *argv]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout + 60, check=False)
    assert proc.returncode not in (124, 125, 126), (
        f"VM run failed with {proc.returncode}:\n{proc.stderr[-6000:]}")
    assert not find_splats(proc.stderr), proc.stderr
    return VmResult(proc.returncode, proc.stdout, proc.stderr)


def run_scenario(kernel: Artifacts, name: str, args: dict[str, Any], *, cpus: int = 2, timeout: float = 300,
                 leak_check: bool = False) -> Any:
    """Run vm_tests/guest/scenarios.py NAME in a fresh VM and return its JSON.

    With leak_check (the debug kernel) the guest also scans for leaks with
    kmemleak after the scenario, and any leak fails the test.
    """
    result = run_vm(kernel, ["python3", "-m", "vm_tests.guest.scenarios", name, json.dumps(args, default=str)],
                    cpus=cpus, timeout=timeout, env={"MEMCG_BPF_KMEMLEAK": "1"} if leak_check else None)
    assert result.exit_code == 0, f"scenario {name} failed:\n{result.stderr[-6000:]}"
    out = result.json()
    record(kernel, name, args, cpus, out)
    if leak_check:
        assert out.pop("kmemleak") == [], "kmemleak found leaks after the scenario"
    return out


def record(kernel: Artifacts, name: str, args: dict[str, Any], cpus: int, out: Any) -> None:
    """Keep the scenario's JSON (miss counts, cycles, seconds) for the report of a run.

    Written to ~/.cache/memcg-bpf/vm-tests/results/NAME-ARGS-KEY-cpusN.json,
    ARGS a hash of the arguments, KEY the kernel's cache key (it names the variant).
    """
    directory = cache_dir() / "vm-tests" / "results"
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()[:8]
    target = directory / f"{name}-{digest}-{kernel.manifest['key']}-cpus{cpus}.json"
    target.write_text(json.dumps({"scenario": name, "args": args, "cpus": cpus, "result": out},
                                 indent=1, default=str) + "\n")


@pytest.fixture
def scenario(kernel: Artifacts) -> Callable[..., Any]:
    """run_scenario() on the test kernel."""
    def call(name: str, args: dict[str, Any], *, cpus: int = 2, timeout: float = 300) -> Any:
        return run_scenario(kernel, name, args, cpus=cpus, timeout=timeout)
    return call
