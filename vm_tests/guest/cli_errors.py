"""Runs inside the test VM: one failing CLI case, reported as JSON.

    python3 -m vm_tests.guest.cli_errors CASE 'JSON-ARGS'

Reports the failing command's exit code and stderr, and afterwards what is
pinned under /sys/fs/bpf and which struct_ops maps the kernel holds.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.runtime.locate import find_libbpf

from .cli_flow import cli, kernel_objects, pinned


def replace(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """load, then --replace with another policy and with the same name; and a name that is not loaded."""
    def listing() -> Any:
        return json.loads(cli("list", "--json")["stdout"])

    result: dict[str, Any] = {"first": cli("load", "telemetry")}
    result["before"] = listing()
    result["other"] = cli("load", "reclaim_boost", "--set", "reclaim_pages=64", "--replace", "telemetry")
    result["after_other"] = listing()
    result["same"] = cli("load", "reclaim_boost", "--set", "reclaim_pages=256", "--replace", "reclaim_boost")
    result["after_same"] = listing()
    result["missing"] = cli("load", "noop", "--replace", "nothing")
    result["cleanup"] = cli("unload", "--all")
    return result


CASES: dict[str, Callable[[dict[str, Any], Libbpf], dict[str, Any]]] = {
    "replace": replace,
}


def main() -> None:
    case, args = sys.argv[1], json.loads(sys.argv[2])
    bpf = Libbpf(find_libbpf())
    sys_ = Sys(bpf)
    before = kernel_objects(sys_)
    result = CASES[case](args, bpf)
    deadline = time.monotonic() + 10
    while kernel_objects(sys_) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    result["objects_left"] = kernel_objects(sys_) != before
    result["pins_left"] = pinned()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
