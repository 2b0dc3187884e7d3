"""Runs inside the VM: the kernel's cgroup selftests on ext4, optionally under an observing policy.

    python3 -m vm_tests.guest.cgroup_selftests 'JSON-ARGS'
        (dir, policy: a bundled policy or null, known_failing: test names)

test_memcontrol's page-cache tests need a block filesystem (tmpfs pages are
shmem, which memory.low/min and reclaim treat as anonymous memory), its swap
tests need swap and its socket test a loopback interface: the guest gets
swap on /dev/zram0, an ext4 disk on a second zram device, and lo up, and runs
every program in a directory on the ext4 disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from memcg_bpf.testbed.cgroup_selftests import PROGRAMS, parse
from memcg_bpf.testbed.guest import swap_on_zram

from .cli_flow import cli

ZRAM_CONTROL = Path("/sys/class/zram-control/hot_add")
MOUNT = Path("/tmp/ext4")
ATTEMPTS = 3


def ext4_on_zram(size: str) -> Path:
    """A fresh ext4 filesystem on a new zram device, mounted at MOUNT."""
    device = int(ZRAM_CONTROL.read_text())
    block = Path(f"/sys/block/zram{device}")
    (block / "disksize").write_text(size)
    subprocess.run(["mkfs.ext4", "-q", f"/dev/zram{device}"], check=True, capture_output=True)
    MOUNT.mkdir()
    subprocess.run(["mount", "-t", "ext4", f"/dev/zram{device}", str(MOUNT)], check=True)
    return MOUNT


def main() -> None:
    args = json.loads(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)     # test_memcg_sock listens on ::1
    swap_on_zram("1G")
    work = ext4_on_zram("512M")
    out: dict[str, Any] = {"results": {}, "filesystem": subprocess.run(
        ["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True, check=True).stdout.strip()}
    if args["policy"]:
        out["load"] = cli("load", args["policy"])
    known_failing = set(args["known_failing"])
    for name in PROGRAMS:
        results: dict[str, str] = {}
        attempts: list[dict[str, Any]] = []
        # Some of these tests depend on timing (memory.low's distribution between
        # siblings, for one): a program whose results include an unexpected failure
        # runs again, up to ATTEMPTS times, and a test that passed once counts as
        # passed. Every attempt is recorded.
        while len(attempts) < ATTEMPTS:
            # Line-buffered, so that a child the test forks does not print the parent's lines again.
            proc = subprocess.run(["stdbuf", "-oL", str(Path(args["dir"]) / name)], cwd=work,
                                  capture_output=True, text=True, timeout=900, check=False)
            attempt = parse(proc.stdout)
            # What the tests printed (values a failing one compared), for the record.
            attempts.append({"exit": proc.returncode, "results": attempt, "output": proc.stdout.splitlines()[-60:]})
            for test, status in attempt.items():
                if results.get(test) != "pass":
                    results[test] = status
            if all(status != "fail" or test in known_failing for test, status in results.items()):
                break
        out["results"][name] = results
        out.setdefault("attempts", {})[name] = attempts
    if args["policy"]:
        out["calls"] = cli("stats", args["policy"], "--json")
        out["unload"] = cli("unload", args["policy"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
