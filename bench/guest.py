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

from memcg_bpf.bpfsys import Sys
from memcg_bpf.cgroups import CGROUP_ROOT
from memcg_bpf.guest import enter_cgroup, swap_on_zram
from memcg_bpf.libbpf import Libbpf, Link, Object, default_libbpf_path
from memcg_bpf.loader import load, unload
from memcg_bpf.stats import Reader


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
    if oom_ok and proc.returncode == -9 and kv(cg / "memory.events").get("oom_kill", 0) > 0:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def kv(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


class Runs:
    """How often the configuration's BPF program has run so far (None: no program, or no counter)."""

    def __init__(self) -> None:
        self.read: Callable[[], int | None] = lambda: None


@contextmanager
def configuration(bpf: Libbpf, config: dict[str, Any]) -> Iterator[Runs]:
    """Attach what a configuration needs."""
    kind = config["kind"]
    runs = Runs()
    if kind == "policy":
        load(bpf, Path(config["obj"]), "bench", tuple(config.get("set", ())))
        reader = Reader(Sys(bpf))
        runs.read = lambda: reader.snapshot("bench").globals.get("total_calls")
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
            bss = next(m for m in obj.maps() if m.name.endswith(".bss"))
            runs.read = lambda: int.from_bytes((bss.lookup(b"\0\0\0\0") or b"")[:8], "little")
            try:
                yield runs
            finally:
                link.destroy()
    else:
        yield runs


def overhead(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    swap_on_zram("2G")
    results: dict[str, Any] = {}
    with configuration(bpf, args["config"]) as runs:
        for regime, limit in (("headroom", None), ("pressure", args["pressure_limit_mb"])):
            before = runs.read()
            with cgroup(f"bench-{regime}", limit) as cg:
                out = run_in(cg, [args["pagefault"], str(args["mb"]), str(args["rounds"] + 1)])
                assert out is not None
                events = kv(cg / "memory.events")
            after = runs.read()
            results[regime] = {"ns_per_page": out["ns_per_page"][1:], "warmup": out["ns_per_page"][0],
                               "pages": out["pages"], "rounds": args["rounds"] + 1,
                               "max_events": events.get("max", 0),
                               "program_runs": after - before if after is not None and before is not None else None}
    return results


def reclaim(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    swap_on_zram("2G")
    results: dict[str, list[dict[str, Any]]] = {}
    with configuration(bpf, args["config"]):
        for workload in args["workloads"]:
            runs = results.setdefault(workload["name"], [])
            for rep in range(args["repeat"]):
                with cgroup(f"bench-{workload['name']}-{rep}", args["limit_mb"]) as cg:
                    out = run_in(cg, [args["reclaimload"], *workload["argv"]], oom_ok=True)
                    stat = kv(cg / "memory.stat")
                    events = kv(cg / "memory.events")
                runs.append({
                    "oom_killed": out is None,
                    **({"seconds": out["seconds"], "pages": out["pages"], "burst_us": out["burst_us"]} if out else {}),
                    "max_events": events.get("max", 0), "oom_kill": events.get("oom_kill", 0),
                    "pgscan": stat.get("pgscan", 0), "pgsteal": stat.get("pgsteal", 0),
                    "pgscan_direct": stat.get("pgscan_direct", 0), "pgsteal_direct": stat.get("pgsteal_direct", 0),
                })
    return {"workloads": results}


def main() -> None:
    scenario, args = sys.argv[1], json.loads(sys.argv[2])
    bpf = Libbpf(default_libbpf_path())
    print(json.dumps({"overhead": overhead, "reclaim": reclaim}[scenario](args, bpf)))


if __name__ == "__main__":
    main()
