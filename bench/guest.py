"""Runs inside the benchmark VM: one configuration, several workloads, one JSON object.

    python3 -m bench.guest overhead 'JSON-ARGS'
    python3 -m bench.guest reclaim 'JSON-ARGS'
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.runtime.cgroups import CGROUP_ROOT, flat_keyed
from memcg_bpf.bpf.cpus import online as online_cpus
from memcg_bpf.testbed.guest import enter_cgroup, swap_on_zram
from memcg_bpf.bpf.libbpf import Libbpf, Link, Object
from memcg_bpf.runtime.locate import find_libbpf
from memcg_bpf.runtime import attach
from memcg_bpf.runtime.loader import load, unload
from memcg_bpf.runtime.stats import Reader


OOM_ATTEMPTS = 3


@contextmanager
def cgroup(name: str, limit_mb: int | None) -> Iterator[Path]:
    path = CGROUP_ROOT / name
    path.mkdir()
    if limit_mb:
        (path / "memory.max").write_text(f"{limit_mb}M")
    try:
        yield path
    finally:
        path.rmdir()


def run_in(cg: Path, argv: list[str], *, oom_ok: bool = False) -> dict[str, Any] | None:
    """The workload's JSON; None if the cgroup's OOM killer killed it and oom_ok."""
    proc = subprocess.run(argv, preexec_fn=lambda: enter_cgroup(cg), capture_output=True, text=True, check=False)
    if oom_ok and proc.returncode == -9 and flat_keyed(cg / "memory.events").get("oom_kill", 0) > 0:
        return None
    if proc.returncode != 0:
        events = " ".join(f"{k}={v}" for k, v in flat_keyed(cg / "memory.events").items() if v)
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}) in {cg.name} [{events}]: "
                         f"{proc.stderr.strip()}")
    return json.loads(proc.stdout)


class Runs:
    """How often the configuration's BPF program has run so far, per cgroup (None: no program, or no counter)."""

    def __init__(self) -> None:
        self.read: Callable[[], dict[int, int] | None] = lambda: None


def runs_between(before: dict[int, int] | None, after: dict[int, int] | None) -> int | None:
    """Program runs between two readings of per-cgroup counts.

    A cgroup's slot restarts from zero when a new cgroup takes its css id
    (each regime runs in a fresh cgroup), so counts are compared per cgroup,
    and a count that went down restarted in between.
    """
    if before is None or after is None:
        return None
    return sum(n - before.get(c, 0) if n >= before.get(c, 0) else n for c, n in after.items())


def calls_in_slots(snapshot_maps: dict[str, list[dict[str, Any]]], dropped: int) -> dict[int, int]:
    """Program runs per cgroup, as telemetry and trace_count count them, with dropped calls under 0."""
    counts = {row["key"]["cgroup_id"]: row["value"]["calls"] for row in snapshot_maps.get("cgroups", [])}
    return {**counts, 0: dropped}


@contextmanager
def configuration(bpf: Libbpf, config: dict[str, Any]) -> Iterator[Runs]:
    """Attach what a configuration needs."""
    kind = config["kind"]
    runs = Runs()
    if kind == "policy":
        target = None
        if config.get("elsewhere"):
            # Attached to a cgroup of its own, outside every measured cgroup: the charges it does not govern.
            (CGROUP_ROOT / "bench-elsewhere").mkdir(exist_ok=True)
            target = attach.resolve("/bench-elsewhere", False)
        load(bpf, Path(config["obj"]), "bench", tuple(config.get("set", ())), target=target)
        reader = Reader(Sys(bpf))

        def read_policy() -> dict[int, int] | None:
            snapshot = reader.snapshot("bench")
            if "dropped_calls" not in snapshot.globals:
                return None     # a policy that counts nothing (noop)
            return calls_in_slots(snapshot.maps, snapshot.globals["dropped_calls"])
        runs.read = read_policy
        try:
            yield runs
        finally:
            unload("bench")
    elif kind in ("fentry", "kprobe"):
        with Object(bpf, config["obj"]) as obj:
            other = "count_kprobe" if kind == "fentry" else "count_fentry"
            obj.program(other).set_autoload(False)
            obj.load()
            link: Link = obj.program(f"count_{kind}").attach()
            table = obj.map("cgroups")
            bss = next(m for m in obj.maps() if m.name.endswith(".bss"))

            def read_tracer() -> dict[int, int]:
                # struct cgroup_stats: head (cgroup id, memcg), then calls; unused slots have cgroup 0.
                calls = {int.from_bytes(v[:8], "little"): int.from_bytes(v[16:24], "little")
                         for _, v in table.items() if any(v[:8])}
                return {**calls, 0: int.from_bytes((bss.lookup(b"\0\0\0\0") or b"")[:8], "little")}
            runs.read = read_tracer
            try:
                yield runs
            finally:
                link.destroy()
    else:
        yield runs


def overhead(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Every charge path in both regimes, in this boot: {path: {regime: result}}."""
    swap_on_zram("2G")
    results: dict[str, Any] = {}
    with configuration(bpf, args["config"]) as runs:
        for name, path in args["paths"].items():
            for regime, limit in (("headroom", None), ("pressure", path["pressure_limit_mb"])):
                argv = [args["chargepath"], name, str(path["size"]), str(args["rounds"] + 1)]
                if path["balloon_mb"]:
                    argv.append(str(path["balloon_mb"]))
                before = runs.read()
                out, events, oom_killed = None, {}, 0
                while out is None:
                    # A tight limit over accounted slab can still end in the OOM killer on any kernel:
                    # an OOM-killed run is run again in a fresh cgroup, and counted.
                    with cgroup(f"bench-{name}-{regime}-{oom_killed}", limit) as cg:
                        out = run_in(cg, argv, oom_ok=oom_killed + 1 < OOM_ATTEMPTS)
                        events = flat_keyed(cg / "memory.events")
                    oom_killed += out is None
                after = runs.read()
                results.setdefault(name, {})[regime] = {
                    "ns_per_unit": out["ns_per_unit"][1:], "warmup": out["ns_per_unit"][0],
                    "units": out["units"], "rounds": args["rounds"] + 1, "max_events": events.get("max", 0),
                    "oom_kill": events.get("oom_kill", 0), "oom_killed_runs": oom_killed,
                    "program_runs": runs_between(before, after)}
    return {"paths": results, "online_cpus": online_cpus()}


def reclaim(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    swap_on_zram("2G")
    results: dict[str, list[dict[str, Any]]] = {}
    with configuration(bpf, args["config"]):
        for workload in args["workloads"]:
            runs = results.setdefault(workload["name"], [])
            for rep in range(args["repeat"]):
                with cgroup(f"bench-{workload['name']}-{rep}", args["limit_mb"]) as cg:
                    out = run_in(cg, [args["reclaimload"], *workload["argv"]], oom_ok=True)
                    stat = flat_keyed(cg / "memory.stat")
                    events = flat_keyed(cg / "memory.events")
                runs.append({
                    "oom_killed": out is None,
                    **({"seconds": out["seconds"], "pages": out["pages"], "burst_us": out["burst_us"]} if out else {}),
                    "max_events": events.get("max", 0), "oom_kill": events.get("oom_kill", 0),
                    "pgscan": stat.get("pgscan", 0), "pgsteal": stat.get("pgsteal", 0),
                    "pgscan_direct": stat.get("pgscan_direct", 0), "pgsteal_direct": stat.get("pgsteal_direct", 0),
                })
    return {"workloads": results, "online_cpus": online_cpus()}


def main() -> None:
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    bpf = Libbpf(find_libbpf())
    print(json.dumps({"overhead": overhead, "reclaim": reclaim}[scenario](args, bpf)))


if __name__ == "__main__":
    main()
