"""Runs inside the benchmark VM: the runs of `bench value` of one boot, one JSON list out.

    python3 -m bench.value 'JSON-ARGS'

args: runs ([case, mode] in the order to run them), cases (the parameters
of each case: service and batch arguments, the policy's load arguments,
the userspace controller's), the binaries (service, batch, uctl), the
cgroup sizes, epoch_ms. Modes: alone (the service without the batch job:
the reference), none (kernel defaults), static (memory.low on the
service), uctl (the userspace controller), bpf (the policy). The cgroups:
/value (memory.high below memory.max) with /value/service and
/value/batch, made afresh for every run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from memcg_bpf.bpf.cpus import online as online_cpus
from memcg_bpf.runtime.cgroups import CGROUP_ROOT, flat_keyed, pressure
from memcg_bpf.testbed.guest import enter_cgroup, swap_on_zram

PARENT = CGROUP_ROOT / "value"
CHILDREN = ("service", "batch")


def flat(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    return {key: value for key, value in flat_keyed(path).items() if key in keys}


def psi(path: Path) -> dict[str, int]:
    """Total stall time in usec, "some" and "full"."""
    return {kind: int(values["total"]) for kind, values in pressure(path).items()}


def sample(cgroup: Path) -> dict[str, Any]:
    return {"events": flat(cgroup / "memory.events", ("high", "max", "oom", "oom_kill")),
            "pressure": psi(cgroup / "memory.pressure"),
            "stat": flat(cgroup / "memory.stat", ("pgscan_direct", "pgsteal_direct", "workingset_refault_anon",
                                                  "anon", "swapcached")),
            "cpu_usec": flat(cgroup / "cpu.stat", ("usage_usec",))["usage_usec"],
            "current": int((cgroup / "memory.current").read_text())}


class Sampler(threading.Thread):
    """Every epoch, the counters of /value and its children."""

    def __init__(self, epoch_s: float) -> None:
        super().__init__(daemon=True)
        self.epoch_s = epoch_s
        self.samples: list[dict[str, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.done.is_set():
            t = time.monotonic() - start
            self.samples.append({"t": round(t, 3), "value": sample(PARENT),
                                 **{c: sample(PARENT / c) for c in CHILDREN}})
            self.done.wait(self.epoch_s - (time.monotonic() - start) % self.epoch_s)


def start(cgroup: Path | None, argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, preexec_fn=(lambda: enter_cgroup(cgroup)) if cgroup else None,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", *args], capture_output=True, text=True, check=False)
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def bpf_programs() -> dict[str, int]:
    """Run count and time of the loaded policy's programs (kernel.bpf_stats_enabled is on)."""
    out = cli("list", "--json")
    totals = {"run_cnt": 0, "run_time_ns": 0}
    if out["rc"] == 0:
        for policy in json.loads(out["stdout"]):
            for prog in policy.get("programs", []):
                for key in totals:
                    totals[key] += int(prog.get(key) or 0)
    return totals


def run(args: dict[str, Any], case: str, mode: str) -> dict[str, Any]:
    params = args["cases"][case]
    PARENT.mkdir()
    (PARENT / "memory.max").write_text(f"{args['max_mb']}M")
    (PARENT / "memory.high").write_text(f"{args['high_mb']}M")
    (PARENT / "cgroup.subtree_control").write_text("+memory")
    for child in CHILDREN:
        (PARENT / child).mkdir()
    result: dict[str, Any] = {"case": case, "mode": mode, "online_cpus": online_cpus()}
    if mode == "static":
        (PARENT / "service" / "memory.low").write_text(f"{args['protect_mb']}M")

    procs = {"service": start(PARENT / "service", [args["service"], *map(str, params["service_args"])])}
    if mode != "alone":
        procs["batch"] = start(PARENT / "batch", [args["batch"], str(args["epoch_ms"]), *params["phases"]])
    for proc in procs.values():
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    controller = None
    if mode == "uctl":
        controller = start(None, [args["uctl"], *map(str, params["uctl_args"])])
    elif mode == "bpf":
        result["load"] = cli("load", *params["policy"], "--name", "value", "--cgroup", "/value")
        if result["load"]["rc"]:
            raise SystemExit(f"bench value: load failed: {result['load']['stderr']}")

    sampler = Sampler(args["epoch_ms"] / 1e3)
    result["start_monotonic"] = time.monotonic()
    sampler.start()
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for name, proc in procs.items():
        result[name] = json.loads(proc.communicate(timeout=args["timeout"])[0].strip().splitlines()[-1])
    sampler.done.set()
    sampler.join()
    if controller:
        controller.send_signal(signal.SIGTERM)
        result["uctl"] = json.loads(controller.communicate(timeout=30)[0])
    elif mode == "bpf":
        result["programs"] = bpf_programs()
        result["stats"] = cli("stats", "value", "--json")
        result["unload"] = cli("unload", "value")
    result["samples"] = sampler.samples
    for child in CHILDREN:
        (PARENT / child).rmdir()
    PARENT.rmdir()
    return result


def main() -> None:
    args = json.loads(sys.argv[1])
    swap_on_zram("2G")
    # Run time of the policy's programs, for the controller's CPU cost (two clock reads per call).
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    print(json.dumps([run(args, case, mode) for case, mode in args["runs"]]))


if __name__ == "__main__":
    main()
