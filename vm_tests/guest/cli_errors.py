"""Runs inside the test VM: one failing CLI case, reported as JSON.

    python3 -m vm_tests.guest.cli_errors CASE 'JSON-ARGS'

Reports the failing command's exit code and stderr, and afterwards what is
pinned under /sys/fs/bpf and which struct_ops maps the kernel holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from memcg_bpf.bpfsys import Sys
from memcg_bpf.libbpf import Libbpf, Object, default_libbpf_path

from .cli_flow import cli, kernel_objects


def no_caps(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Root, but without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (as in an unprivileged container)."""
    proc = subprocess.run(["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin",
                           sys.executable, "-m", "memcg_bpf", "load", "telemetry"],
                          capture_output=True, text=True, check=False)
    return {"rc": proc.returncode, "stderr": proc.stderr}


def no_sys_admin(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Root with CAP_BPF and CAP_PERFMON but not CAP_SYS_ADMIN (what a BPF token could grant)."""
    proc = subprocess.run(["setpriv", "--bounding-set=-sys_admin",
                           sys.executable, "-m", "memcg_bpf", "load", "telemetry"],
                          capture_output=True, text=True, check=False)
    return {"rc": proc.returncode, "stderr": proc.stderr}


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


def no_bpffs(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    subprocess.run(["umount", "/sys/fs/bpf"], check=True)
    return cli("load", "telemetry")


def held_by_ours(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    first = cli("load", "telemetry")
    assert first["rc"] == 0, first["stderr"]
    result = cli("load", "noop")
    result["pins_while_held"] = sorted(p.name for p in Path("/sys/fs/bpf/memcg-bpf").iterdir())
    result["cleanup"] = cli("unload", "telemetry")
    return result


def held_by_other(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    with Object(bpf, args["obj"]) as obj:
        obj.load()
        link = obj.struct_ops_maps()[0].attach_struct_ops()
        result = cli("load", "telemetry")
        result["holder_map_id"] = Sys(bpf).map_info(obj.struct_ops_maps()[0].fd).id
        result["holder_link_id"] = Sys(bpf).link_info(link.fd).id
        link.destroy()
    return result


def name_in_use(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    first = cli("load", "telemetry")
    assert first["rc"] == 0, first["stderr"]
    result = cli("load", "noop", "--name", "telemetry")
    result["cleanup"] = cli("unload", "--all")
    return result


def verifier(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    return cli("load", args["obj"])


CASES: dict[str, Callable[[dict[str, Any], Libbpf], dict[str, Any]]] = {
    "no_caps": no_caps, "no_sys_admin": no_sys_admin, "replace": replace, "no_bpffs": no_bpffs, "held_by_ours": held_by_ours,
    "held_by_other": held_by_other, "name_in_use": name_in_use, "verifier": verifier,
}


def main() -> None:
    case, args = sys.argv[1], json.loads(sys.argv[2])
    bpf = Libbpf(default_libbpf_path())
    sys_ = Sys(bpf)
    before = kernel_objects(sys_)
    result = CASES[case](args, bpf)
    deadline = time.monotonic() + 10
    while kernel_objects(sys_) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    result["objects_left"] = kernel_objects(sys_) != before
    bpffs = Path("/sys/fs/bpf")
    result["pins_left"] = sorted(str(p) for p in bpffs.rglob("*")) if bpffs.is_dir() else []
    print(json.dumps(result))


if __name__ == "__main__":
    main()
