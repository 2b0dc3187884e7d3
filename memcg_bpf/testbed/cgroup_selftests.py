"""The kernel's own memory-cgroup selftests (tools/testing/selftests/cgroup): build and parse.

The series does not touch these tests, so they are built once from the
pristine source tree, cached by the tree's identity, and run unchanged on the
unpatched and the patched kernel (vm_tests/test_cgroup_selftests.py).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from ..errors import MemcgBpfError

PROGRAMS = ("test_core", "test_kmem", "test_memcontrol")
SUBDIR = Path("tools/testing/selftests/cgroup")
# One TAP result line of kselftest_harness-less tests: "ok 3 test_x", "not ok 4 test_y",
# "ok 10 # SKIP test_z".
RESULT = re.compile(r"^(not ok|ok) (\d+) (# SKIP )?(\S+)")


def build(source: Path, identity: str, cache: Path) -> Path:
    """Compile PROGRAMS from source's selftests into the cache once; the directory that holds them."""
    directory = cache / "cgroup-selftests" / hashlib.sha256(identity.encode()).hexdigest()[:16]
    if all((directory / name).is_file() for name in PROGRAMS):
        return directory
    tests = source / SUBDIR
    if not (tests / "test_memcontrol.c").is_file():
        raise MemcgBpfError(f"{tests} has no test_memcontrol.c: the kernel source tree is incomplete, "
                            "rebuild it with 'memcg-bpf kernel build --force'")
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["make", "-C", str(tests), f"OUTPUT={directory}",
                           *(str(directory / name) for name in PROGRAMS)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "; ".join(proc.stderr.strip().splitlines()[-3:])
        raise MemcgBpfError(f"building the cgroup selftests in {tests} failed: {tail}")
    return directory


def parse(output: str) -> dict[str, str]:
    """{test name: "pass" | "fail" | "skip"} from one program's TAP output.

    A test forks children; a line a child printed twice is counted once, and
    a test reported twice with different results is an error.
    """
    results: dict[str, str] = {}
    for line in output.splitlines():
        match = RESULT.match(line)
        if not match:
            continue
        status = "skip" if match.group(3) else ("pass" if match.group(1) == "ok" else "fail")
        name = match.group(4)
        if results.setdefault(name, status) != status:
            raise MemcgBpfError(f"the selftest output reports {name} as both {results[name]} and {status}")
    return results
