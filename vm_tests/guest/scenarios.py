"""Runs inside the test VM: one scenario per call, one JSON object on stdout.

    python3 -m vm_tests.guest.scenarios NAME 'JSON-ARGS'

Uses the real kernel, libbpf and cgroup2; nothing here is mocked.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from memcg_bpf.bpf import btf as B
from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.runtime import attach
from memcg_bpf.runtime.cgroups import CGROUP_ROOT, cgroup_id, flat_keyed
from memcg_bpf.bpf.cpus import online as online_cpus
from memcg_bpf.testbed.guest import enter_cgroup, make_cgroup, swap_on_zram
from memcg_bpf.bpf.libbpf import Libbpf, LibbpfError, Link, Map, Object
from memcg_bpf.runtime.locate import find_libbpf
U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")
STATS = ["calls", "done", "failed", "done_with_over", "failed_no_over", "reclaim_calls"]
KNOBS = {"write": 0, "nr_pages": 1, "retval": 2}


def start_in_cgroup(cgroup: Path, argv: list[str], env: dict[str, str] | None = None,
                    cpu: int | None = None) -> subprocess.Popen[str]:
    def setup() -> None:
        enter_cgroup(cgroup)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    return subprocess.Popen(argv, preexec_fn=setup, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


class HogsPerCpu:
    """One memhog pinned to each online CPU, looping until stop()."""

    def __init__(self, cgroup: Path, memhog: str, mb: int) -> None:
        self.stop_file = Path(tempfile.mkdtemp()) / "stop"
        self.procs = [start_in_cgroup(cgroup, [memhog, str(mb), "100000"], {"MEMHOG_STOP": str(self.stop_file)},
                                      cpu=cpu) for cpu in range(online_cpus())]

    def stop(self, timeout: float = 120) -> dict[str, list[int]]:
        self.stop_file.touch()
        codes, rounds = [], []
        for proc in self.procs:
            out, _ = proc.communicate(timeout=timeout)
            codes.append(proc.returncode)
            rounds.append(int(out.strip() or 0))
        return {"hog_rcs": codes, "hog_rounds": rounds}


def bss(obj: Object) -> dict[str, Any]:
    """The object's global variables (its .bss), decoded through its BTF."""
    btf = B.Btf(obj.raw_btf())
    m = next(m for m in obj.maps() if m.name.endswith(".bss"))
    raw = m.lookup(b"\0\0\0\0")
    assert raw is not None
    return btf.decode(m.btf_value_type_id, raw)


def misses(sys_: Sys, obj: Object, prog: str) -> int:
    """recursion_misses of a loaded program, from bpf_prog_info."""
    return sys_.prog_info(obj.program(prog).fd).recursion_misses


CTL_DETACHED, CTL_HOLD = 0, 1


def set_ctl(obj: Object, value: int, index: int = CTL_DETACHED) -> None:
    obj.map("ctl").update(U32.pack(index), U64.pack(value))


def inflight(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Remove (or replace) a policy while one of its calls is surely in flight on another CPU.

    The handler holds while ctl[1] is set. Each cycle: attach, wait until a
    call holds, remove the policy in a thread, wait, release the call. The
    removal must not return before the held call did.
    """
    import threading

    swap_on_zram()
    cg = make_cgroup("inflight", memory__max=f"{args['max_mb']}M")
    # One hog, on the last CPU; this process stays on CPU 0.
    cpu = online_cpus() - 1
    stop = Path(tempfile.mkdtemp()) / "stop"
    hog = start_in_cgroup(cg, [args["memhog"], str(args["hog_mb"]), "100000"], {"MEMHOG_STOP": str(stop)}, cpu=cpu)
    os.sched_setaffinity(0, {0})
    cycles = []
    with Object(bpf, args["obj"]) as obj, Object(bpf, args["obj"]) as other:
        for o in (obj, other):
            o.program("count_entries").set_autoload(False)
            o.load()
        for _ in range(args["cycles"]):
            set_ctl(obj, 0)
            set_ctl(obj, 1, CTL_HOLD)
            link = obj.struct_ops_maps()[0].attach_struct_ops()
            deadline = time.monotonic() + 60
            while bss(obj)["in_flight"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            held_before = bss(obj)["in_flight"]
            returned: list[int] = []

            def remove() -> None:
                if args["how"] == "update":
                    link.update_map(other.struct_ops_maps()[0])
                else:
                    link.destroy()
                returned.append(time.monotonic_ns())

            remover = threading.Thread(target=remove)
            started_ns = time.monotonic_ns()
            remover.start()
            time.sleep(args.get("wait", 0.3))
            returned_while_held = bool(returned)
            released_ns = time.monotonic_ns()
            set_ctl(obj, 0, CTL_HOLD)
            remover.join()
            set_ctl(obj, 1)
            counters = bss(obj)
            cycles.append({"held": held_before, "returned_while_held": returned_while_held,
                           "started_ns": started_ns, "released_ns": released_ns,
                           "removal_returned_ns": returned[0], "last_exit_ns": counters["last_exit_ns"]})
            link.destroy()
        late = bss(obj)["late_calls"]
    stop.touch()
    hog.communicate(timeout=120)
    return {"cycles": cycles, "late_calls": late, "hog_rc": hog.returncode, "online_cpus": online_cpus()}


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
        if args.get("pipe_mb"):
            # Root may exceed pipe-max-size (CAP_SYS_RESOURCE); raise it anyway, for clarity.
            Path("/proc/sys/fs/pipe-max-size").write_text(str(args["pipe_mb"] << 20))
            env["MEMHOG_PIPE_MB"] = str(args["pipe_mb"])
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


def legacy(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Register a legacy (non-link) struct_ops map: the map update must fail."""
    with Object(bpf, args["obj"]) as obj:
        obj.load()
        _, err = register_errno(obj.struct_ops_maps()[0].attach_struct_ops)
        return {"errno": errno.errorcode.get(err, err)}


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


def lifetime_stress(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Attach and detach N times while every CPU charges; count handler calls after detach returned."""
    swap_on_zram()
    cg = make_cgroup("stress", memory__max=f"{args['max_mb']}M")
    hogs = HogsPerCpu(cg, args["memhog"], args["hog_mb"])
    # Share CPU 0 with its hog: waking up from the sleeps below preempts it, sometimes in its handler.
    os.sched_setaffinity(0, {0})
    rng = random.Random(args.get("seed", 1))
    errors: list[str] = []
    started = time.monotonic()
    with Object(bpf, args["obj"]) as obj:
        obj.load()
        ops = obj.struct_ops_maps()[0]
        for _ in range(args["cycles"]):
            set_ctl(obj, 0)
            try:
                link = ops.attach_struct_ops()
            except LibbpfError as exc:
                errors.append(exc.message)
                continue
            time.sleep(rng.random() * args.get("hold", 0.004))
            link.destroy()
            set_ctl(obj, 1)
            # Let whatever was preempted or in flight run on while ctl says "detached".
            time.sleep(args.get("after", 0.002))
        elapsed = time.monotonic() - started
        # Any call still running after a detach returned would see ctl set.
        time.sleep(0.5)
        counters = bss(obj)
        missed = misses(Sys(bpf), obj, "lifetime_charge")
    return {"errors": errors, "calls": counters["calls"], "late_calls": counters["late_calls"],
            "misses": missed, "seconds": elapsed, "online_cpus": online_cpus(),
            "events": (cg / "memory.events").read_text(), **hogs.stop()}


def update_swap(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Swap the handler of one link between A and B with BPF_LINK_UPDATE while every CPU charges.

    Every call the kernel makes towards a handler (fentry on __memcg_bpf_try_charge)
    must reach A or B or be counted as their miss: no gap. Neither runs once an
    update away from it returned.
    """
    swap_on_zram()
    cg = make_cgroup("swap", memory__max=f"{args['max_mb']}M")
    sys_ = Sys(bpf)
    with Object(bpf, args["obj"]) as a, Object(bpf, args["obj"]) as b:
        a.program("count_entries").set_autoload(True)
        b.program("count_entries").set_autoload(False)
        a.load()
        b.load()
        map_a, map_b = a.struct_ops_maps()[0], b.struct_ops_maps()[0]
        set_ctl(a, 0)
        set_ctl(b, 1)
        link = map_a.attach_struct_ops()
        counter = a.program("count_entries").attach()
        hogs = HogsPerCpu(cg, args["memhog"], args["hog_mb"])
        errors: list[str] = []
        for i in range(args["swaps"]):
            (old, new, old_map) = (a, b, map_b) if i % 2 == 0 else (b, a, map_a)
            set_ctl(new, 0)
            try:
                link.update_map(old_map)
            except LibbpfError as exc:
                errors.append(exc.message)
                break
            set_ctl(old, 1)
            time.sleep(args.get("hold", 0.002))
        hog_result = hogs.stop()
        link.destroy()      # no handler runs once this returns: the counters are final
        counter.destroy()
        ca, cb = bss(a), bss(b)
        return {
            "errors": errors,
            "entries": ca["entries"], "entry_misses": misses(sys_, a, "count_entries"),
            "calls": [ca["calls"], cb["calls"]],
            "misses": [misses(sys_, a, "lifetime_charge"), misses(sys_, b, "lifetime_charge")],
            "late_calls": [ca["late_calls"], cb["late_calls"]],
            "online_cpus": online_cpus(), **hog_result,
        }


def reentry(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """A handler that makes accounted allocations with IRQs off, its maps charged to a non-root cgroup.

    Loaded with `memcg-bpf load` from a process in the cgroup "loader", so the
    maps (and the timers the handler allocates) are charged there, while
    pinned memhogs in another cgroup charge on every CPU (other cgroups in
    the per-cpu stocks, so the handler's allocations miss them).
    """
    loader = make_cgroup("loader")
    load_cg = make_cgroup("load")
    hogs = HogsPerCpu(load_cg, args["memhog"], args["hog_mb"])
    time.sleep(1)   # stocks warm with the hogs' cgroup on every CPU

    def cli(*argv: str, cgroup: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memcg_bpf", *argv], capture_output=True, text=True,
                              check=False, preexec_fn=(lambda: enter_cgroup(cgroup)) if cgroup else None)

    loaded = cli("load", args["obj"], "--name", "reentry", cgroup=loader)
    time.sleep(args["seconds"])
    listing = cli("list", "--json")
    stats = cli("stats", "reentry", "--json")
    unloaded = cli("unload", "reentry")
    return {
        "load": {"rc": loaded.returncode, "stderr": loaded.stderr},
        "list": json.loads(listing.stdout) if listing.returncode == 0 else listing.stderr,
        "globals": json.loads(stats.stdout)["globals"] if stats.returncode == 0 else stats.stderr,
        "unload_rc": unloaded.returncode,
        "online_cpus": online_cpus(),
        **hogs.stop(),
    }


CAP_SYS_ADMIN = 21


@contextmanager
def without_cap_sys_admin() -> Iterator[None]:
    """Drop CAP_SYS_ADMIN from this thread's effective set (CAP_BPF and CAP_PERFMON stay)."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data):
        raise OSError(ctypes.get_errno(), "capget")
    saved = data[0].effective
    data[0].effective &= ~(1 << CAP_SYS_ADMIN)
    if libc.capset(ctypes.byref(header), data):
        raise OSError(ctypes.get_errno(), "capset")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


def cap_sys_admin(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Without CAP_SYS_ADMIN a policy loads but cannot register or replace one."""
    with Object(bpf, args["obj"]) as a, Object(bpf, args["obj"]) as b, Object(bpf, args["obj"]) as c:
        for obj in (a, b, c):
            obj.program("count_entries").set_autoload(False)
        a.load()
        b.load()
        link = a.struct_ops_maps()[0].attach_struct_ops()
        with without_cap_sys_admin():
            c.load()    # loading needs CAP_BPF and CAP_PERFMON only
            link.destroy()
            _, attach_errno = register_errno(c.struct_ops_maps()[0].attach_struct_ops)
        link = a.struct_ops_maps()[0].attach_struct_ops()
        with without_cap_sys_admin():
            try:
                link.update_map(b.struct_ops_maps()[0])
                update_errno = 0
            except LibbpfError as exc:
                update_errno = exc.errno
        _, admin_attach_errno = register_errno(c.struct_ops_maps()[0].attach_struct_ops)
        link.update_map(b.struct_ops_maps()[0])
        link.destroy()
        return {"attach_errno": errno.errorcode.get(attach_errno, attach_errno),
                "update_errno": errno.errorcode.get(update_errno, update_errno),
                "admin_attach_errno": errno.errorcode.get(admin_attach_errno, admin_attach_errno)}


def load_fails(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Load an object the verifier must reject; report errno and the log."""
    with Object(bpf, args["obj"]) as obj:
        try:
            obj.load()
        except LibbpfError as exc:
            return {"loaded": False, "errno": errno.errorcode.get(exc.errno, exc.errno), "log": exc.log}
        return {"loaded": True}


def remove_cgroup(path: Path, tries: int = 200) -> None:
    """rmdir path, retrying for up to tries * 50 ms: a task that just exited may still be leaving it."""
    for _ in range(tries):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def rmdir_attached(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Attach to a fresh cgroup, charge it, rmdir it, release the link; N times, while every CPU charges.

    Patch 4 detaches a policy when its cgroup goes offline and keeps no
    reference on the cgroup: the link that remains must be inert and safe
    to release (KASAN on the debug kernel).
    """
    swap_on_zram()
    busy = make_cgroup("busy", memory__max=f"{args['max_mb']}M")
    hogs = HogsPerCpu(busy, args["memhog"], args["hog_mb"])
    cycles = []
    started = time.monotonic()
    for i in range(args["cycles"]):
        gone = make_cgroup(f"gone{i}", memory__max=f"{args['max_mb']}M")
        with Object(bpf, args["obj"]) as obj:
            obj.program("observe_reclaim").set_autoload(False)
            ops = obj.struct_ops_maps()[0]
            attach.write(B.Btf(obj.raw_btf()), ops, attach.Target(f"/gone{i}", cgroup_id(gone)))
            obj.load()
            link = ops.attach_struct_ops()
            hog = start_in_cgroup(gone, [args["memhog"], str(args["hog_mb"])])
            hog.communicate(timeout=300)
            calls = u64_array(obj.map("stats"), STATS)["calls"]
            remove_cgroup(gone)
            time.sleep(0.2)       # the other CPUs go on charging, under no policy
            calls_after_rmdir = u64_array(obj.map("stats"), STATS)["calls"]
            link.destroy()        # unregisters a policy whose cgroup is gone
        cycles.append({"hog_rc": hog.returncode, "calls": calls, "removed": not gone.exists(),
                       "calls_after_rmdir": calls_after_rmdir})
    return {"cycles": cycles, "online_cpus": online_cpus(), "seconds": round(time.monotonic() - started, 1),
            **hogs.stop()}


def kfuncs(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """A below_low handler attached to a parent calls the read kfuncs while the parent's limit is enforced."""
    swap_on_zram()
    parent = make_cgroup("kf", memory__max=f"{args['max_mb']}M")
    (parent / "cgroup.subtree_control").write_text("+memory")
    child = make_cgroup("c", parent)
    with Object(bpf, args["obj"]) as obj:
        ops = obj.struct_ops_maps()[0]
        attach.write(B.Btf(obj.raw_btf()), ops, attach.Target("/kf", cgroup_id(parent)))
        obj.load()
        link = ops.attach_struct_ops()
        hog = start_in_cgroup(child, [args["memhog"], str(args["hog_mb"])])
        # Reading memory.stat flushes the counters the page-state kfunc returns,
        # which otherwise lag up to the kernel's 2 s periodic flush.
        flushes = 0
        while hog.poll() is None:
            (child / "memory.stat").read_text()
            flushes += 1
            time.sleep(0.02)
        hog.communicate(timeout=120)
        link.destroy()
        seen = bss(obj)
    return {"seen": seen, "hog_rc": hog.returncode, "parent_id": cgroup_id(parent), "child_id": cgroup_id(child),
            "max_mb": args["max_mb"], "stat_reads": flushes}


def throttle(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """memhog goes past memory.high with no swap to reclaim to; a high_delay handler sets the throttle.

    The policy is attached to the parent /th and the high is set on the
    child /th/c, or (on_parent) the policy on the child and the high on
    the parent, where the child's policy must not be asked.
    """
    parent = make_cgroup("th")
    (parent / "cgroup.subtree_control").write_text("+memory")
    child = make_cgroup("c", parent, memory__swap__max="0")
    limited, attached = (parent, child) if args.get("on_parent") else (child, parent)
    (limited / "memory.high").write_text(f"{args['high_mb']}M")
    with Object(bpf, args["obj"]) as obj:
        ops = obj.struct_ops_maps()[0]
        attach.write(B.Btf(obj.raw_btf()), ops, attach.Target(str(attached), cgroup_id(attached)))
        obj.load()
        links = [ops.attach_struct_ops(), obj.program("throttle_slept").attach()]
        started = time.monotonic()
        hog = start_in_cgroup(child, [args["memhog"], str(args["hog_mb"])])
        hog.communicate(timeout=300)
        seconds = time.monotonic() - started
        for link in links:
            link.destroy()
        seen = bss(obj)
    events = flat_keyed(limited / "memory.events")
    result = {"seen": seen, "hog_rc": hog.returncode, "seconds": round(seconds, 2), "high_events": events["high"],
              "limited_id": cgroup_id(limited), "child_id": cgroup_id(child)}
    for cg in (child, parent):
        remove_cgroup(cg)
    return result


def remove_cgroups(keep: set[Path]) -> None:
    """rmdir every cgroup made since `keep` was taken, deepest first (their processes have exited)."""
    for path in sorted(set(CGROUP_ROOT.rglob("*/")) - keep, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and (path / "cgroup.procs").exists():
            path.rmdir()


def sequence(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Several scenarios in one VM, one after the other: {"steps": [[label, name, args], ...]}."""
    results = {}
    for label, name, step_args in args["steps"]:
        print(f"step {label}", file=sys.stderr, flush=True)
        keep = set(CGROUP_ROOT.rglob("*/"))
        started = time.monotonic()
        results[label] = SCENARIOS[name](step_args, bpf)
        results[label]["seconds_in_guest"] = round(time.monotonic() - started, 1)
        remove_cgroups(keep)
    return results


def reclaim_async(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """vm_tests/guest/reclaim.py's scenario (imported here, as it builds on this module)."""
    from .reclaim import reclaim_async as scenario
    return scenario(args, bpf)


SCENARIOS: dict[str, Callable[[dict[str, Any], Libbpf], dict[str, Any]]] = {
    "observe": observe,
    "exclusive": exclusive,
    "legacy": legacy,
    "lifetime_stress": lifetime_stress,
    "inflight": inflight,
    "update_swap": update_swap,
    "reentry": reentry,
    "cap_sys_admin": cap_sys_admin,
    "load_fails": load_fails,
    "sequence": sequence,
    "rmdir_attached": rmdir_attached,
    "kfuncs": kfuncs,
    "throttle": throttle,
    "reclaim_async": reclaim_async,
}


KMEMLEAK = Path("/sys/kernel/debug/kmemleak")
KMEMLEAK_MIN_AGE = 5.0  # seconds: kmemleak does not report younger objects


def kmemleak_clear() -> None:
    """Report and then forget what leaked before the scenario (boot), so only the scenario's leaks count."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    time.sleep(max(0.0, KMEMLEAK_MIN_AGE + 1 - uptime))
    KMEMLEAK.write_text("scan")
    KMEMLEAK.write_text("clear")


def kmemleak_scan() -> list[str]:
    """The leaks kmemleak reports (one text block each) since kmemleak_clear()."""
    time.sleep(KMEMLEAK_MIN_AGE + 1)
    for _ in range(2):
        KMEMLEAK.write_text("scan")
    text = KMEMLEAK.read_text()
    return [block.strip() for block in text.split("unreferenced object ")[1:]]


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2]
    leak_check = os.environ.get("MEMCG_BPF_KMEMLEAK") == "1"
    if leak_check:
        kmemleak_clear()
    bpf = Libbpf(find_libbpf())
    result = SCENARIOS[name](json.loads(raw), bpf)
    if leak_check:
        result["kmemleak"] = kmemleak_scan()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
