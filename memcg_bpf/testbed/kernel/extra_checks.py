"""W=1 and sparse (C=2) over chosen files of a built kernel tree, as upstream's build bots run them.

A maintainer's first question of a series is whether it adds warnings that
the default build does not show: gcc's extra warnings (W=1) and sparse's
(address spaces, locking contexts, undeclared non-static symbols). The
unpatched tree has some of its own, so a check compares the two trees and
reports what only the patched one has.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.testbed.kernel.build import BUILD_SUBDIR

# gcc and sparse both print "file:line:col: warning: message"; sparse's follow-up lines
# ("file:line:col:    expected ...") carry no kind and belong to the line before.
DIAGNOSTIC = re.compile(r"^(?P<path>[^\s:]+):\d+:\d+: (?P<kind>warning|error): (?P<message>.*)$")
CHECKED = re.compile(r"^\s*CHECK\s+(?P<path>\S+)$")


@dataclass(frozen=True)
class CheckRun:
    """What `make W=1 C=2` said about some files of one tree."""

    checked: frozenset[str]  # source files sparse ran on
    diagnostics: Counter[str]  # "file: kind: message", line numbers dropped so trees compare


def source_path(printed: str) -> str:
    """mm/memcontrol.c, whether make printed it relative to the object tree (../mm/…) or absolute."""
    path = printed
    while path.startswith("../"):
        path = path[3:]
    marker = "/src/"
    return path.split(marker, 1)[1] if marker in path else path


def parse(output: str) -> CheckRun:
    checked: set[str] = set()
    diagnostics: Counter[str] = Counter()
    for line in output.splitlines():
        if m := CHECKED.match(line):
            checked.add(source_path(m["path"]))
        elif m := DIAGNOSTIC.match(line.strip()):
            diagnostics[f"{source_path(m['path'])}: {m['kind']}: {m['message']}"] += 1
    return CheckRun(frozenset(checked), diagnostics)


def run_checks(tree: Path, sources: list[str], jobs: int) -> CheckRun:
    """Recompile SOURCES (kernel .c files) of a built tree with W=1 under sparse; return what was said.

    The objects are then compiled again the normal way, so the tree stays
    what its last build left (make would otherwise see a changed command).
    """
    src = tree / "src"
    if not (src / BUILD_SUBDIR / "vmlinux").is_file():
        raise MemcgBpfError(f"{tree} holds no built kernel: run 'memcg-bpf kernel build' first")
    objects = [s.removesuffix(".c") + ".o" for s in sources]
    base = ["make", "-C", str(src), f"O={src / BUILD_SUBDIR}", f"-j{jobs}"]
    proc = subprocess.run([*base, "W=1", "C=2", *objects], capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise MemcgBpfError(f"'make W=1 C=2' failed in {src}; its output ends:\n{tail}")
    restore = subprocess.run([*base, *objects], capture_output=True, text=True, check=False)
    if restore.returncode != 0:
        raise MemcgBpfError(f"rebuilding {', '.join(objects)} in {src} after the check failed: "
                            f"{restore.stderr.strip()[-500:]}")
    return parse(output)


def added(patched: CheckRun, unpatched: CheckRun) -> list[str]:
    """Diagnostics the patched tree has more often than the unpatched one."""
    return sorted((patched.diagnostics - unpatched.diagnostics).elements())
