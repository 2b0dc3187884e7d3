"""Runs inside the test VM: policies attached per cgroup, through the real CLI; one JSON object out.

    python3 -m vm_tests.guest.hierarchy '{"memhog": ..., "observe": OBJ, "cycles": N}'

Each step records the CLI's exit code and output, and what the kernel
shows (stats, reclaim targets seen by an independent fentry program on
try_to_free_mem_cgroup_pages()); the host test decides.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from memcg_bpf.bpf.cpus import online as online_cpus
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.runtime.cgroups import CGROUP_ROOT, flat_keyed
from memcg_bpf.runtime.locate import find_libbpf

from . import reclaim
from .cli_flow import cli, pinned
from .scenarios import cgroup_id, kfuncs, make_cgroup, remove_cgroup, throttle, rmdir_attached, start_in_cgroup, swap_on_zram, u64_hash


def nested(name: str, memory: bool = True, **files: str) -> Path:
    """mkdir CGROUP_ROOT/name, with the memory controller enabled for it in its parent (unless not memory)."""
    path = CGROUP_ROOT / name
    if memory and path.parent != CGROUP_ROOT:
        (path.parent / "cgroup.subtree_control").write_text("+memory")
    return make_cgroup(path.name, path.parent, **files)


def stats_paths(policy: str) -> dict[str, Any]:
    """The cgroups a telemetry policy counted, by path, with their failed and charged counts."""
    out = cli("stats", policy, "--json")
    if out["rc"]:
        return {"error": out["stderr"]}
    rows = json.loads(out["stdout"])["maps"]["cgroups"]
    return {row["key"]["path"] or str(row["key"]["cgroup_id"]): row["value"] for row in rows}


def reclaim_targets(bpf: Libbpf, observe: str, cgroup: Path, memhog: str) -> dict[str, Any]:
    """Reclaim targets (nr_pages -> calls) while memhog fills cgroup."""
    observer = Object(bpf, observe)
    observer.program("observe_charge").set_autoload(False)
    observer.load()
    fentry = observer.program("observe_reclaim").attach()
    try:
        rc = reclaim.hog_timed(cgroup, memhog, 48)["rc"]
    finally:
        fentry.destroy()
    targets = {str(k): v for k, v in sorted(u64_hash(observer.map("reclaimed")).items())}
    observer.close()
    return {"hog_rc": rc, "targets": targets}


def siblings(memhog: str) -> dict[str, Any]:
    """Two sibling cgroups, each under its own telemetry policy, charged at the same time."""
    a = make_cgroup("a", memory__max="24M")
    b = make_cgroup("b", memory__max="24M")
    r: dict[str, Any] = {"load_a": cli("load", "telemetry", "--name", "ta", "--cgroup", "/a"),
                         "load_b": cli("load", "telemetry", "--name", "tb", "--cgroup", str(b))}
    procs = [start_in_cgroup(cg, [memhog, "48"], cpu=i % online_cpus()) for i, cg in enumerate((a, b))]
    r["hog_rcs"] = [p.wait(timeout=300) for p in procs]
    r["stats_a"], r["stats_b"] = stats_paths("ta"), stats_paths("tb")
    r["list"] = cli("list", "--json")
    r["same_cgroup"] = cli("load", "noop", "--name", "dup", "--cgroup", "/a")
    r["root_without_override"] = cli("load", "noop", "--name", "top")
    r["root_with_override"] = cli("load", "noop", "--name", "top", "--allow-override")
    r["unload_all"] = cli("unload", "--all")
    os.rmdir(a)
    os.rmdir(b)
    return r


def authority(bpf: Libbpf, observe: str, memhog: str) -> dict[str, Any]:
    """Who sets the reclaim target when a parent's limit is hit: the parent's policy, not the child's."""
    parent = make_cgroup("p", memory__max="24M")
    child = nested("p/c")
    r: dict[str, Any] = {}
    r["load_root"] = cli("load", "noop", "--name", "top", "--allow-override")
    r["load_child"] = cli("load", "reclaim_boost", "--name", "childboost", "--cgroup", "/p/c",
                          "--set", "reclaim_pages=256")
    r["child_only"] = reclaim_targets(bpf, observe, child, memhog)
    r["unload_child"] = cli("unload", "childboost")
    r["load_parent"] = cli("load", "reclaim_boost", "--name", "parentboost", "--cgroup", "/p",
                           "--set", "reclaim_pages=256")
    r["parent"] = reclaim_targets(bpf, observe, child, memhog)
    r["unload_all"] = cli("unload", "--all")
    os.rmdir(child)
    os.rmdir(parent)
    return r


def governing(memhog: str) -> dict[str, Any]:
    """Which policy sees a cgroup's charges as policies are attached, replaced and detached around it.

    Patch 9 keeps the governing policy in every cgroup: attach, detach and
    replace rewrite it over a subtree, a new cgroup takes its parent's.
    """
    nested("g")
    old = nested("g/old")

    def calls(policy: str) -> dict[str, int]:
        return {path: row["calls"] for path, row in stats_paths(policy).items()}

    def hog(cgroup: Path) -> int:
        return int(reclaim.hog_timed(cgroup, memhog, 16)["rc"])

    r: dict[str, Any] = {"load_top": cli("load", "telemetry", "--name", "gtop", "--cgroup", "/g", "--allow-override")}
    nested("g/new")                # created under the attached policy, as is:
    deep = nested("g/new/deep")
    rcs = [hog(old), hog(deep)]
    r["top"] = calls("gtop")
    r["load_sub"] = cli("load", "telemetry", "--name", "gsub", "--cgroup", "/g/new")
    rcs.append(hog(deep))
    r["top_with_sub"], r["sub"] = calls("gtop"), calls("gsub")
    r["unload_sub"] = cli("unload", "gsub")
    rcs.append(hog(deep))
    r["top_after_sub"] = calls("gtop")
    r["replace_top"] = cli("load", "telemetry", "--name", "gtop2", "--replace", "gtop", "--allow-override")
    rcs.append(hog(deep))
    r["top2"] = calls("gtop2")
    r["load_root"] = cli("load", "telemetry", "--name", "groot", "--allow-override")
    r["unload_top2"] = cli("unload", "gtop2")
    rcs.append(hog(old))
    r["root"] = calls("groot")
    r["unload_all"] = cli("unload", "--all")
    r["hog_rcs"] = rcs
    for name in ("g/new/deep", "g/new", "g/old", "g"):
        os.rmdir(CGROUP_ROOT / name)
    return r


def no_override() -> dict[str, Any]:
    nested("s")
    nested("s/x")
    nested("s/x/nomem", memory=False)
    r = {"load_strict": cli("load", "noop", "--name", "strict", "--cgroup", "/s"),
         "load_below": cli("load", "noop", "--name", "below", "--cgroup", "/s/x"),
         "no_such_cgroup": cli("load", "noop", "--name", "nosuch", "--cgroup", "/s/nosuch"),
         "no_memory": cli("load", "noop", "--name", "nomem", "--cgroup", "/s/x/nomem"),
         "unload_all": cli("unload", "--all"),
         "list_after": cli("list", "--json")}
    for name in ("s/x/nomem", "s/x", "s"):
        os.rmdir(CGROUP_ROOT / name)
    return r


HOLD = ("import sys, time; b = bytearray({mb} << 20); b[::4096] = bytes(len(b) // 4096); "
        "print('ready', flush=True); time.sleep(3600)")


def memory_files(cgroup: Path) -> dict[str, int]:
    return {"current": int((cgroup / "memory.current").read_text()),
            "swap": int((cgroup / "memory.swap.current").read_text()),
            "anon": flat_keyed(cgroup / "memory.stat")["anon"]}


def protection(memhog: str, policy: list[str] | None) -> dict[str, Any]:
    """A service holds 32 MiB in /w/svc while batch work streams 96 MiB through /w/batch under /w's 64 MiB.

    policy: the load command line of a policy for /w, or None (kernel defaults).
    """
    parent = nested("w", memory__max="64M")
    svc, batch = nested("w/svc"), nested("w/batch")
    r: dict[str, Any] = {}
    holder = start_in_cgroup(svc, [sys.executable, "-c", HOLD.format(mb=32)])
    assert holder.stdout is not None
    r["holder_ready"] = holder.stdout.readline().strip()
    r["svc_before"] = memory_files(svc)
    if policy:
        r["load"] = cli("load", *policy)
    r["batch_rc"] = reclaim.hog_timed(batch, memhog, 96)["rc"]
    r["svc_after"] = memory_files(svc)
    r["batch_after"] = memory_files(batch)
    r["parent_events"] = (parent / "memory.events").read_text()
    if policy:
        r["stats"] = cli("stats", "prio", "--json")
        r["unload"] = cli("unload", "prio")
    holder.kill()
    holder.wait()
    for cg in (svc, batch, parent):
        remove_cgroup(cg)
    return r


def proactive(bpf: Libbpf, probe_path: str, memhog: str, policy: list[str] | None) -> dict[str, Any]:
    """memhog streams 128 MiB through /pa/job under /pa's 64 MiB memory.max, with swap.

    policy: the load command line of a policy for /pa, or None (kernel defaults).
    """
    parent = nested("pa", memory__max="64M")
    job = nested("pa/job")
    r: dict[str, Any] = {}
    if policy:
        r["load"] = cli("load", *policy)
    with reclaim.probe(bpf, probe_path) as reclaims:
        r["hog"] = reclaim.hog_timed(job, memhog, 128)
    r["reclaims"] = reclaims
    r["parent"] = reclaim.cgroup_files(parent)
    r["job"] = reclaim.cgroup_files(job)
    r["ids"] = {"parent": cgroup_id(parent), "job": cgroup_id(job)}
    if policy:
        r["stats"] = cli("stats", "pro", "--json")
        r["unload"] = cli("unload", "pro")
    for cg in (job, parent):
        remove_cgroup(cg)
    return r


def spare_high(bpf: Libbpf, probe_path: str, memhog: str) -> dict[str, Any]:
    """/ph goes over its memory.high (16M, no swap): who sleeps for it, without and with priority on /ph."""
    parent = nested("ph", memory__high="16M")
    svc, batch = nested("ph/svc", memory__swap__max="0"), nested("ph/batch", memory__swap__max="0")
    ids = {"svc": cgroup_id(svc), "batch": cgroup_id(batch)}
    r: dict[str, Any] = {"ids": ids}
    for label, cgroup, policy in (("none_svc", svc, False), ("priority_svc", svc, True),
                                  ("priority_batch", batch, True)):
        if policy:
            r[f"load_{label}"] = cli("load", "priority", "--name", "prio", "--cgroup", "/ph",
                                     "--set", "cgroup_ids=/ph/svc")
        with reclaim.sleeps(bpf, probe_path) as slept:
            r[f"hog_{label}"] = reclaim.hog_timed(cgroup, memhog, 18)
        r[f"slept_{label}"] = slept.get(ids[cgroup.name], {"calls": 0, "jiffies": 0})
        if policy:
            r[f"stats_{label}"] = cli("stats", "prio", "--json")
            r[f"unload_{label}"] = cli("unload", "prio")
    for cg in (svc, batch, parent):
        remove_cgroup(cg)
    return r


def rmdir_via_cli(memhog: str) -> dict[str, Any]:
    """Attach to a cgroup, charge it, remove it: list shows the policy inert, unload removes it."""
    gone = make_cgroup("gone", memory__max="16M")
    r: dict[str, Any] = {"load": cli("load", "telemetry", "--name", "gone", "--cgroup", "/gone")}
    r["hog_rc"] = reclaim.hog_timed(gone, memhog, 24)["rc"]
    remove_cgroup(gone)
    r["removed"] = not gone.exists()
    r["list"] = cli("list", "--json")
    r["list_text"] = cli("list")
    r["unload"] = cli("unload", "gone")
    r["list_after"] = cli("list", "--json")
    return r


def main() -> None:
    args = json.loads(sys.argv[1])
    memhog = args["memhog"]
    bpf = Libbpf(find_libbpf())
    swap_on_zram()
    result: dict[str, Any] = {"cpus": online_cpus()}
    result["siblings"] = siblings(memhog)
    result["authority"] = authority(bpf, args["observe"], memhog)
    result["no_override"] = no_override()
    result["governing"] = governing(memhog)
    result["protect_none"] = protection(memhog, None)
    result["protect_priority"] = protection(memhog, ["priority", "--name", "prio", "--cgroup", "/w",
                                                     "--set", "cgroup_ids=/w/svc"])
    result["spare_high"] = spare_high(bpf, args["sleep_probe"], memhog)
    result["kfuncs"] = kfuncs({"obj": args["kfuncs"], "memhog": memhog, "max_mb": 24, "hog_mb": 48}, bpf)
    for label, obj in args["throttle"].items():
        result[f"throttle_{label}"] = throttle({"obj": obj, "memhog": memhog, "high_mb": 16, "hog_mb": 18,
                                                "on_parent": label == "on_parent"}, bpf)
    for target, nr_pages in (("own", 64), ("child", 64), ("parent", 64), ("sibling", 64), ("own", 0)):
        result[f"reclaim_async_{target}_{nr_pages}"] = reclaim.reclaim_async(
            {"obj": args["reclaim_async"], "probe": args["reclaim_probe"], "memhog": memhog, "max_mb": 32,
             "hog_mb": 48, "target": target, "nr_pages": nr_pages}, bpf)
    result["proactive_none"] = proactive(bpf, args["reclaim_probe"], memhog, None)
    result["proactive"] = proactive(bpf, args["reclaim_probe"], memhog,
                                    ["proactive", "--name", "pro", "--cgroup", "/pa", "--set", "percent=75"])
    result["rmdir_cli"] = rmdir_via_cli(memhog)
    result["rmdir"] = rmdir_attached({"obj": args["observe"], "memhog": memhog, "max_mb": 16, "hog_mb": 24,
                                      "cycles": args["cycles"]}, bpf)
    result["pins_left"] = pinned()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
