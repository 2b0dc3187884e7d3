"""The patch series as kernel code: style, and builds of every variant that must build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.bpf import btf as B
from memcg_bpf.bpf.vmlinux_h import raw_btf
from memcg_bpf.runtime.compile import vmlinux_h
from memcg_bpf.testbed.kernel import extra_checks
from memcg_bpf.testbed.kernel.build import APPLIED_FILE, Artifacts, default_jobs, patch_digests
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.testbed.kernel.patches import read_series
from memcg_bpf.paths import REPO_ROOT, cache_dir, patch_dir

from .conftest import run_vm


def series_files() -> list[Path]:
    return list(read_series(patch_dir()).patches)


def touched_files() -> set[str]:
    """Files the series changes; its header is included only by files it changes."""
    files = set()
    for patch in series_files():
        for line in patch.read_text().splitlines():
            if line.startswith("+++ b/"):
                files.add(line[len("+++ b/"):])
    return files


def new_warnings(warnings: list[str]) -> list[str]:
    """Compiler warnings in files the series touches (6.12 has a few of its own elsewhere)."""
    return [w for w in warnings if any(f"/{name}:" in w or w.startswith(f"{name}:") for name in touched_files())]


@pytest.mark.parametrize("patch", series_files(), ids=lambda p: p.name[:4])
def test_checkpatch_strict_is_clean(patch: Path, kernel: Artifacts) -> None:
    source = Path(kernel.manifest["source"])
    proc = subprocess.run([str(source / "scripts" / "checkpatch.pl"), "--strict", str(patch)],
                          cwd=source, capture_output=True, text=True, check=False)
    assert "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_patched_kernel_built_without_warnings(kernel: Artifacts) -> None:
    assert kernel.manifest["patches"] == [p.name for p in series_files()]
    assert new_warnings(kernel.manifest["warnings"]) == []


def build_json(*args: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "kernel", "build", "--json", *args],
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_builds_with_memcg_bpf_disabled(kernel: Artifacts) -> None:
    result = build_json("--config", "CONFIG_MEMCG_BPF=n")
    assert new_warnings(result["warnings"]) == []
    config = Path(result["config"]).read_text()
    assert "# CONFIG_MEMCG_BPF is not set" in config
    # And it boots: without the option there is no memcg_ops type in BTF.
    off = Artifacts(Path(result["bzImage"]).parent, {})
    vm = run_vm(off, ["sh", "-c", "grep -c memcg_ops /sys/kernel/btf/vmlinux || true"])
    assert vm.stdout.strip() == "0"


def prefix_has_option(count: int) -> bool:
    """The first COUNT patches define CONFIG_MEMCG_BPF (patch 1 only touches the BPF core)."""
    return any("+config MEMCG_BPF\n" in p.read_text() for p in series_files()[:count])


def prefix_cases() -> list[tuple[int, str]]:
    """(patches, CONFIG_MEMCG_BPF) for each proper prefix; =n only once the option exists (patch 2)."""
    cases = []
    for count in range(1, len(series_files())):
        cases.append((count, "y"))
        if prefix_has_option(count):
            cases.append((count, "n"))
    return cases


@pytest.mark.slow
@pytest.mark.bisect  # one kernel build per prefix and setting: too long for every CI run (see README, Tests)
@pytest.mark.parametrize(("count", "setting"), prefix_cases(), ids=lambda v: str(v))
def test_each_prefix_of_the_series_builds(count: int, setting: str, tmp_path: Path, kernel: Artifacts) -> None:
    """Bisectable: the first COUNT patches build with CONFIG_MEMCG_BPF=SETTING and add no warning.

    Each setting has one tree for all prefixes, so going from one prefix to
    the next rebuilds only what that patch touches.
    """
    for patch in series_files()[:count]:
        shutil.copy2(patch, tmp_path / patch.name)
    (tmp_path / "series").write_text("".join(p.name + "\n" for p in series_files()[:count]))
    fragment = (patch_dir() / "qemu.config").read_text()
    has_option = prefix_has_option(count)
    if not has_option:
        # The option does not exist yet (patch 1 only touches the BPF core): do not ask for it.
        fragment = fragment.replace("CONFIG_MEMCG_BPF=y\n", "")
    (tmp_path / "qemu.config").write_text(fragment)
    args = ("--config", "CONFIG_MEMCG_BPF=n") if setting == "n" else ()
    result = build_json(*args, env={"MEMCG_BPF_PATCH_DIR": str(tmp_path)})
    assert new_warnings(result["warnings"]) == []
    config = Path(result["config"]).read_text()
    if has_option:
        assert ("CONFIG_MEMCG_BPF=y" in config) == (setting == "y")


def kernel_c_files() -> list[str]:
    """The kernel C files the series changes or adds (not the selftests, which are not kernel code)."""
    return sorted(f for f in touched_files() if f.endswith(".c") and not f.startswith("tools/"))


def built_tree(artifacts: Artifacts, patches: list[Path]) -> Path:
    """The tree that built ARTIFACTS, checked to still carry PATCHES (a later build may have moved it)."""
    tree = cache_dir() / "trees" / artifacts.manifest["variant"]
    applied = tree / APPLIED_FILE
    have = applied.read_text().split() if applied.is_file() else []
    assert have == patch_digests(patches), \
        f"{tree} no longer holds the sources of {artifacts.directory}: rebuild it with 'memcg-bpf kernel build'"
    return tree


@pytest.mark.slow
def test_w1_and_sparse_find_nothing_new(kernel: Artifacts, baseline_kernel: Artifacts) -> None:
    """`make W=1 C=2` on every kernel C file of the series: no warning the unpatched files lack.

    The default build's warnings are checked above; this adds gcc's extra
    warnings and sparse's (an undeclared non-static kfunc, a missing __rcu,
    a lock context imbalance), as the kernel's build bots report them.
    """
    files = kernel_c_files()
    assert {"mm/memcontrol.c", "mm/memcontrol_bpf.c", "kernel/bpf/bpf_struct_ops.c"} <= set(files)
    patched = extra_checks.run_checks(built_tree(kernel, series_files()), files, default_jobs())
    base_tree = built_tree(baseline_kernel, [])
    existing = [f for f in files if (base_tree / "src" / f).is_file()]
    unpatched = extra_checks.run_checks(base_tree, existing, default_jobs())
    # sparse really ran on each file, in both trees: a check that did not run finds nothing.
    # (It also checks what make prepares on the way, scripts/mod/empty.c.)
    assert set(files) <= patched.checked and set(existing) <= unpatched.checked
    assert extra_checks.added(patched, unpatched) == []


def test_kernel_doc_is_clean(kernel: Artifacts) -> None:
    """The kernel-doc of struct try_charge_memcg, struct memcg_ops and the helpers parses without warnings."""
    src = cache_dir() / "trees" / kernel.manifest["variant"] / "src"
    files = [src / "mm" / "memcontrol_bpf.h", src / "mm" / "memcontrol_bpf.c"]
    proc = subprocess.run([str(src / "scripts" / "kernel-doc"), "-none", "-Wall", *map(str, files)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    header = files[0].read_text()
    for documented in ("struct try_charge_memcg - ", "struct memcg_ops - ", "memcg_bpf_try_charge - ",
                       "enum memcg_bpf_verdict - ", "enum memcg_bpf_limits - ", "enum memcg_bpf_reclaim_options - "):
        assert documented in header
    # The BPF core helper the series adds.
    proc = subprocess.run([str(src / "scripts" / "kernel-doc"), "-none", "-Wall", "-function",
                           "bpf_struct_ops_inc_misses", str(src / "kernel" / "bpf" / "bpf_struct_ops.c")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "bpf_struct_ops_inc_misses - " in (src / "kernel" / "bpf" / "bpf_struct_ops.c").read_text()


def test_the_documentation_page_builds_without_warnings(kernel: Artifacts, tmp_path: Path) -> None:
    """`make htmldocs` for Documentation/admin-guide/mm, which holds memcg_ops.rst and its kernel-doc.

    Only warnings about the series' files count: the other pages of the
    directory link to documents outside it, which SPHINXDIRS leaves out.
    """
    src = cache_dir() / "trees" / kernel.manifest["variant"] / "src"
    assert (src / "Documentation" / "admin-guide" / "mm" / "memcg_ops.rst").is_file()
    sphinx = Path(sys.executable).with_name("sphinx-build")
    proc = subprocess.run(["make", "-C", str(src), f"O={tmp_path}", f"SPHINXBUILD={sphinx}",
                           "SPHINXDIRS=admin-guide/mm", "htmldocs"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = [line for line in (proc.stdout + proc.stderr).splitlines()
            if ("WARNING" in line or "ERROR" in line) and ("memcg_ops" in line or "memcontrol_bpf" in line)]
    assert ours == []
    page = (tmp_path / "Documentation" / "output" / "admin-guide" / "mm" / "memcg_ops.html").read_text()
    # The kernel-doc of the interface made it into the page.
    for name in ("memcg_ops", "try_charge_memcg", "MEMCG_OPS_F_ALLOW_OVERRIDE", "bpf_mem_cgroup_reclaim_async"):
        assert name in page, name


def test_interface_constants_are_in_btf(kernel: Artifacts) -> None:
    """Programs read the verdicts, the reclaim maximum and the reclaim flags from BTF (vmlinux.h)."""
    bpf = Libbpf(kernel.libbpf)
    vmlinux = B.Btf(raw_btf(bpf, kernel.vmlinux))
    enums = {name: vmlinux.find(name, B.ENUM) for name in
             ("memcg_bpf_verdict", "memcg_bpf_limits", "memcg_bpf_reclaim_options")}
    values = {name: {v: k for k, v in e.enum_values.items()} for name, e in enums.items() if e}
    assert values == {
        "memcg_bpf_verdict": {"MEMCG_BPF_DEFAULT": 0, "MEMCG_BPF_SET_RECLAIM": 1},
        "memcg_bpf_limits": {"MEMCG_BPF_MAX_RECLAIM_PAGES": 512},
        "memcg_bpf_reclaim_options": {"MEMCG_BPF_RECLAIM_MAY_SWAP": 2, "MEMCG_BPF_RECLAIM_PROACTIVE": 4},
    }
    header = vmlinux_h(bpf, kernel.vmlinux, cache_dir()) / "vmlinux.h"
    assert "MEMCG_BPF_MAX_RECLAIM_PAGES = 512," in header.read_text()
