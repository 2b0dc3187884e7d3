"""Runs inside the test VM: one scenario per call, one JSON object on stdout.

    python3 -m vm_tests.guest.scenarios NAME 'JSON-ARGS'

Uses the real kernel, libbpf and cgroup2; nothing here is mocked.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from memcg_bpf.cgroups import CGROUP_ROOT
from memcg_bpf.guest import enter_cgroup, make_cgroup, swap_on_zram
from memcg_bpf.libbpf import Libbpf, LibbpfError, Link, Map, Object, default_libbpf_path
U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")
STATS = ["calls", "done", "failed", "done_with_over", "failed_no_over", "reclaim_calls"]
KNOBS = {"write": 0, "nr_pages": 1, "retval": 2}


def cgroup_id(path: Path) -> int:
    return os.stat(path).st_ino


def start_in_cgroup(cgroup: Path, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, preexec_fn=lambda: enter_cgroup(cgroup), stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def u64_array(m: Map, names: list[str]) -> dict[str, int]:
    out = {}
    for index, name in enumerate(names):
        value = m.lookup(U32.pack(index))
        out[name] = U64.unpack(value)[0] if value else 0
    return out


def u64_hash(m: Map) -> dict[int, int]:
    return {U64.unpack(k[:8])[0]: U64.unpack(v)[0] for k, v in m.items()}


def set_knobs(obj: Object, knobs: dict[str, int]) -> None:
    for name, value in knobs.items():
        obj.map("knobs").update(U32.pack(KNOBS[name]), U64.pack(value))


def observe(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Load observe.bpf.o, run memhog in a cgroup under a limit, report what the hook saw."""
    swap_on_zram()
    if args.get("parent_limit"):
        parent = make_cgroup("parent", memory__max=f"{args['max_mb']}M")
        (parent / "cgroup.subtree_control").write_text("+memory")
        child = make_cgroup("child", parent)
    else:
        parent = None
        child = make_cgroup("child", memory__max=f"{args['max_mb']}M")
    with Object(bpf, args["obj"]) as obj:
        obj.load()
        set_knobs(obj, args.get("knobs", {}))
        links = [obj.struct_ops_maps()[0].attach_struct_ops(), obj.program("observe_reclaim").attach()]
        env = {"MEMHOG_THP": "1"} if args.get("thp") else {}
        hog = start_in_cgroup(child, [args["memhog"], str(args["hog_mb"])], env)
        out, _ = hog.communicate(timeout=args.get("hog_timeout", 120))
        for link in links:
            link.destroy()
        result = {
            "hog_rc": hog.returncode,
            "stats": u64_array(obj.map("stats"), STATS),
            "failed_by": [[k[0], k[1], v] for k, v in
                          ((struct.unpack("<QQ", key), U64.unpack(val)[0]) for key, val in obj.map("failed_by").items())],
            "requested": u64_hash(obj.map("requested")),
            "reclaimed": u64_hash(obj.map("reclaimed")),
            "child_id": cgroup_id(child),
            "parent_id": cgroup_id(parent) if parent else None,
            "memory_events": (child / "memory.events").read_text() if not parent else
                             (parent / "memory.events").read_text(),
        }
    return result


def register_errno(attach: Callable[[], Link]) -> tuple[Link | None, int]:
    try:
        return attach(), 0
    except LibbpfError as exc:
        return None, exc.errno


def charge_some(memhog: str) -> int:
    cg = CGROUP_ROOT / "charge-some"
    if not cg.exists():
        make_cgroup("charge-some")
    hog = start_in_cgroup(cg, [memhog, "16"])
    hog.communicate(timeout=60)
    return hog.returncode


def exclusive(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Register A, try B (expect EEXIST), unregister A, register B; B must then see charges."""
    with Object(bpf, args["first"]) as a, Object(bpf, args["second"]) as b:
        a.load()
        b.load()
        link_a, err_a = register_errno(a.struct_ops_maps()[0].attach_struct_ops)
        link_b, second_errno = register_errno(b.struct_ops_maps()[0].attach_struct_ops)
        if link_b:
            link_b.destroy()
        if link_a:
            link_a.destroy()
        link_b, reattach_errno = register_errno(b.struct_ops_maps()[0].attach_struct_ops)
        calls_before = u64_array(b.map("stats"), STATS)["calls"]
        hog_rc = charge_some(args["memhog"])
        calls_after = u64_array(b.map("stats"), STATS)["calls"]
        if link_b:
            link_b.destroy()
        return {"first_errno": err_a, "second_errno": second_errno, "reattach_errno": reattach_errno,
                "second_calls": calls_after - calls_before, "hog_rc": hog_rc}


def unregister_stress(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Register and unregister N times while two processes charge and free in a loop."""
    swap_on_zram()
    cg = make_cgroup("stress", memory__max=f"{args['max_mb']}M")
    hogs = [start_in_cgroup(cg, [args["memhog"], str(args["hog_mb"]), str(args["seconds"])])
            for _ in range(2)]
    with Object(bpf, args["obj"]) as obj:
        obj.load()
        errors = []
        for _ in range(args["iterations"]):
            try:
                link = obj.struct_ops_maps()[0].attach_struct_ops()
            except LibbpfError as exc:
                errors.append(exc.message)
                continue
            time.sleep(args.get("hold", 0.01))
            link.destroy()
        calls = u64_array(obj.map("stats"), STATS)["calls"]
    rounds = []
    codes = []
    for hog in hogs:
        out, _ = hog.communicate(timeout=args["seconds"] + 120)
        codes.append(hog.returncode)
        rounds.append(int(out.strip() or 0))
    return {"errors": errors, "calls": calls, "hog_rcs": codes, "hog_rounds": rounds,
            "events": (cg / "memory.events").read_text()}


def load_fails(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Load an object the verifier must reject; report errno and the log."""
    with Object(bpf, args["obj"]) as obj:
        try:
            obj.load()
        except LibbpfError as exc:
            return {"loaded": False, "errno": errno.errorcode.get(exc.errno, exc.errno), "log": exc.log}
        return {"loaded": True}


SCENARIOS: dict[str, Callable[[dict[str, Any], Libbpf], dict[str, Any]]] = {
    "observe": observe,
    "exclusive": exclusive,
    "unregister_stress": unregister_stress,
    "load_fails": load_fails,
}


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2]
    bpf = Libbpf(default_libbpf_path())
    result = SCENARIOS[name](json.loads(raw), bpf)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
