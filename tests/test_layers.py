"""The policy runtime stands apart from the test-kernel tooling: it imports none of it."""

from __future__ import annotations

import ast
from pathlib import Path

from memcg_bpf.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "memcg_bpf"
# What a sysadmin runs on a patched host, and what it is built on.
RUNTIME = ["bpfsys", "btf", "btfdump", "cgroups", "compile", "cpus", "errors", "fields", "knobs", "libbpf", "listing",
           "loader", "locate", "maptypes", "paths", "pins", "policy", "preflight", "progress", "prom", "stats",
           "struct_ops", "toolchain", "watch"]
# The developer's test bed: kernel builds, the VM, benchmarks.
TESTBED = ("memcg_bpf.kernel", "memcg_bpf.vm", "memcg_bpf.bench", "memcg_bpf.report", "memcg_bpf.guest")
# The command line uses both.
ENTRY = ("cli",)


def imported(module: str) -> set[str]:
    """Absolute names of the memcg_bpf modules a runtime module imports (at any depth in the file)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                base = f"memcg_bpf.{base}" if base else "memcg_bpf"
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("memcg_bpf")}


def test_runtime_imports_nothing_from_the_test_bed() -> None:
    testbed_modules = [t.removeprefix("memcg_bpf.") for t in TESTBED if (PACKAGE / f"{t[10:]}.py").exists()]
    unsorted = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", *RUNTIME, *testbed_modules, *ENTRY}
    assert not unsorted, f"put {sorted(unsorted)} in RUNTIME or TESTBED"
    for module in RUNTIME:
        bad = sorted(n for n in imported(module) if n.startswith(TESTBED))
        assert not bad, f"memcg_bpf/{module}.py imports {bad}"
