"""The series' own BPF selftests: test_progs with only `memcg_ops` in it.

The series adds tools/testing/selftests/bpf/prog_tests/memcg_ops.c and its
progs/memcg_ops*.c. Building all of test_progs (some 800 BPF programs, the
test kernel modules) would take longer than the rest of CI, so the build
copies the selftests directory without its tests, puts back ours (and
progs/btf_data.c, which the link step needs), and builds test_progs from
that copy with the kernel's Makefile: the same harness, helpers and flags.
The binary is cached by the kernel's cache key.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MemcgBpfError
from ..progress import Progress
from ..runtime.toolchain import find_clang
from .kernel.build import Artifacts, default_jobs

TEST = "memcg_ops"
SELFTESTS = Path("tools/testing/selftests/bpf")
STAGING = "bpf-memcg-ops"       # a sibling of bpf/, so that the Makefile's relative paths hold
# Variables of the selftests Makefile that name files of the full suite.
TRIM = ("TRUNNER_EXTRA_FILES=", "LSKELS=", "LSKELS_EXTRA=", "LINKED_SKELS=")
SUMMARY = re.compile(r"^Summary: (\d+)/(\d+) PASSED, (\d+) SKIPPED, (\d+) FAILED", re.M)
SUBTEST = re.compile(rf"^#\d+/\d+\s+{TEST}/(\S+):(OK|FAIL|SKIP)\s*$", re.M)


def tree(kernel: Artifacts, cache: Path) -> Path:
    """The patched sources the kernel was built from (without build products)."""
    return cache / "trees" / kernel.manifest["variant"] / "stage"


def build(kernel: Artifacts, cache: Path, progress: Progress | None = None) -> Path:
    """test_progs for kernel, built once; the directory that holds it."""
    progress = progress or Progress()
    out = cache / "bpf-selftests" / kernel.manifest["key"]
    if (out / "test_progs").is_file():
        progress.say("cache", f"test_progs -t {TEST} for kernel {kernel.manifest['key']} is up to date")
        return out
    selftests = tree(kernel, cache) / SELFTESTS
    tests = sorted((selftests / "prog_tests").glob(f"{TEST}*.c"))
    progs = sorted((selftests / "progs").glob(f"{TEST}*.c"))
    if not tests:
        raise MemcgBpfError(f"{selftests}/prog_tests has no {TEST}.c: the kernel was built from a series "
                            "without the selftests patch; rebuild it with 'memcg-bpf kernel build --force'")
    staging = selftests.with_name(STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(selftests, staging, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n.endswith(".c")]
                    if Path(d).name in ("prog_tests", "progs") else [])
    for source in (*tests, *progs, selftests / "progs" / "btf_data.c"):
        shutil.copy2(source, staging / source.parent.name / source.name)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    progress.say("selftests", f"building test_progs with {len(tests)} test file(s) and {len(progs)} "
                              f"BPF program file(s) (log: {tmp.parent / 'build.log'})")
    clang = find_clang()
    argv = ["make", "-C", str(staging), f"OUTPUT={tmp}", f"VMLINUX_BTF={kernel.vmlinux}", *TRIM,
            f"CLANG={clang}", f"-j{default_jobs()}", str(tmp / "test_progs")]
    log = tmp.parent / "build.log"
    with log.open("w") as f:
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=False)
    shutil.rmtree(staging, ignore_errors=True)
    if proc.returncode != 0:
        tail = "; ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise MemcgBpfError(f"building test_progs failed ({tail}): see {log}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


@dataclass(frozen=True)
class Outcome:
    passed: int                    # tests
    subtests_passed: int
    skipped: int
    failed: int
    subtests: dict[str, str]       # name: OK | FAIL | SKIP


def parse(output: str) -> Outcome:
    """test_progs -v output: its summary line and every memcg_ops subtest's result."""
    match = SUMMARY.search(output)
    if not match:
        raise MemcgBpfError("test_progs printed no summary line: it crashed or was killed")
    subtests = {name: status for name, status in SUBTEST.findall(output)}
    return Outcome(passed=int(match.group(1)), subtests_passed=int(match.group(2)), skipped=int(match.group(3)),
                   failed=int(match.group(4)), subtests=subtests)
