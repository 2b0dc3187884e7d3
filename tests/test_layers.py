"""The package layout says what depends on what: generic BPF plumbing (memcg_bpf/bpf/), the policy runtime
a sysadmin uses (memcg_bpf/runtime/), the developer's test bed (memcg_bpf/testbed/: kernel build, VM,
benchmarks). bpf/ imports neither of the others; runtime/ imports nothing from the test bed."""

from __future__ import annotations

import ast

import pytest

from memcg_bpf.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "memcg_bpf"
FORBIDDEN = {"bpf": ("memcg_bpf.runtime", "memcg_bpf.testbed", "memcg_bpf.cli"),
             "runtime": ("memcg_bpf.testbed", "memcg_bpf.cli")}


def imported(tree: ast.AST, module: str) -> set[str]:
    """Absolute names of what a module imports, at any depth (lazy imports in functions too)."""
    package = module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_from_the_layers_above(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    for path in files:
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        bad = sorted(n for n in imported(ast.parse(path.read_text()), module) if n.startswith(FORBIDDEN[layer]))
        assert not bad, f"{path.relative_to(REPO_ROOT)} imports {bad}"


def test_top_level_holds_only_the_entry_and_shared_basics() -> None:
    flat = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__", "__main__", "cli", "errors", "paths", "progress"]
