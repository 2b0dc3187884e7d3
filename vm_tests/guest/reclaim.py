"""Runs inside the test VM: reclaim a policy asks for (kernel patch 8), and who pays for it.

An independent fentry/fexit probe on try_to_free_mem_cgroup_pages()
(vm_tests/bpf/reclaim_probe.bpf.c) records every reclaim: proactive or
direct, the cgroup and pid of the task that runs it, the cgroup it
reclaims from and its duration. The host tests decide.
"""

from __future__ import annotations

import struct
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from memcg_bpf.bpf import btf as B
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.runtime import attach
from memcg_bpf.runtime.cgroups import flat_keyed

from .scenarios import U32, U64, bss, cgroup_id, make_cgroup, remove_cgroup, start_in_cgroup, swap_on_zram

KEY = struct.Struct("<QQII")
VALUE = struct.Struct("<QQQQQ")


@contextmanager
def probe(bpf: Libbpf, path: str) -> Iterator[list[dict[str, int]]]:
    """Attach the reclaim probe; on exit, fill the yielded list with one row per (runner, target, kind)."""
    rows: list[dict[str, int]] = []
    with Object(bpf, path) as obj:
        obj.load()
        links = [obj.program(name).attach() for name in ("probe_enter", "probe_exit")]
        try:
            yield rows
        finally:
            for link in links:
                link.destroy()
        for key, value in obj.map("reclaims").items():
            runner, target, proactive, kthread = KEY.unpack(key)
            calls, ns, asked, reclaimed, last_pid = VALUE.unpack(value)
            rows.append({"runner_cgroup": runner, "target_cgroup": target, "proactive": proactive,
                         "kthread": kthread, "calls": calls, "ns": ns, "asked": asked, "reclaimed": reclaimed,
                         "last_pid": last_pid})


@contextmanager
def sleeps(bpf: Libbpf, path: str) -> Iterator[dict[int, dict[str, int]]]:
    """Attach the sleep probe; on exit, fill the yielded dict: cgroup id -> memory.high throttle sleeps."""
    out: dict[int, dict[str, int]] = {}
    with Object(bpf, path) as obj:
        obj.load()
        link = obj.program("probe_sleep").attach()
        try:
            yield out
        finally:
            link.destroy()
        for key, value in obj.map("slept").items():
            calls, jiffies = struct.unpack("<QQ", value)
            out[U64.unpack(key)[0]] = {"calls": calls, "jiffies": jiffies}


def cgroup_files(cgroup: Path) -> dict[str, Any]:
    stat = flat_keyed(cgroup / "memory.stat")
    return {"events": flat_keyed(cgroup / "memory.events"), "cpu": flat_keyed(cgroup / "cpu.stat"),
            "pgscan_direct": stat["pgscan_direct"], "pgsteal_direct": stat["pgsteal_direct"],
            "current": int((cgroup / "memory.current").read_text())}


def hog_timed(cgroup: Path, memhog: str, mb: int) -> dict[str, Any]:
    started = time.monotonic()
    proc = start_in_cgroup(cgroup, [memhog, str(mb)])
    proc.communicate(timeout=300)
    return {"rc": proc.returncode, "pid": proc.pid, "seconds": round(time.monotonic() - started, 2)}


def reclaim_async(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """A handler attached to /ra/c asks, on every charge, for reclaim of args["target"] while memhog fills /ra/c.

    target: "own" (id 0), "child" (/ra/c by id), "parent" (/ra, above the
    attach point) or "sibling" (/ra/s); nr_pages: what it asks for.
    """
    swap_on_zram()
    parent = make_cgroup("ra")
    (parent / "cgroup.subtree_control").write_text("+memory")
    child = make_cgroup("c", parent, memory__max=f"{args['max_mb']}M")
    sibling = make_cgroup("s", parent)
    ids = {"own": 0, "child": cgroup_id(child), "parent": cgroup_id(parent), "sibling": cgroup_id(sibling)}
    with probe(bpf, args["probe"]) as reclaims, Object(bpf, args["obj"]) as obj:
        ops = obj.struct_ops_maps()[0]
        attach.write(B.Btf(obj.raw_btf()), ops, attach.Target("/ra/c", cgroup_id(child)))
        obj.load()
        obj.map("cfg").update(U32.pack(0), U64.pack(ids[args["target"]]))
        obj.map("cfg").update(U32.pack(1), U64.pack(args["nr_pages"]))
        link = ops.attach_struct_ops()
        hog = hog_timed(child, args["memhog"], args["hog_mb"])
        link.destroy()
        seen = bss(obj)
    result = {"seen": seen, "hog": hog, "reclaims": reclaims, "child": cgroup_files(child),
              "ids": {"child": cgroup_id(child), "parent": cgroup_id(parent), "sibling": cgroup_id(sibling)}}
    for cg in (child, sibling, parent):
        remove_cgroup(cg)
    return result
