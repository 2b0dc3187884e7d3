"""Runs inside the benchmark VM: one case of `bench value` in one mode, one JSON object out.

    python3 -m bench.value 'JSON-ARGS'

args: case (priority|proactive), mode (none|static|uctl|bpf), the binaries
(service, batch, uctl), the parameters of each, and epoch_ms. The cgroups:
/value (memory.high below memory.max) with /value/service and /value/batch.
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
from memcg_bpf.runtime.cgroups import CGROUP_ROOT
from memcg_bpf.testbed.guest import enter_cgroup, swap_on_zram

PARENT = CGROUP_ROOT / "value"
CHILDREN = ("service", "batch")


def flat(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in keys:
            out[key] = int(value)
    return out


def psi(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        kind, *fields = line.split()
        out[kind] = int(dict(f.split("=") for f in fields)["total"])
    return out


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


def run(args: dict[str, Any]) -> dict[str, Any]:
    swap_on_zram("2G")
    PARENT.mkdir()
    (PARENT / "memory.max").write_text(f"{args['max_mb']}M")
    (PARENT / "memory.high").write_text(f"{args['high_mb']}M")
    (PARENT / "cgroup.subtree_control").write_text("+memory")
    for child in CHILDREN:
        (PARENT / child).mkdir()
    mode, case = args["mode"], args["case"]
    result: dict[str, Any] = {"case": case, "mode": mode, "online_cpus": online_cpus()}
    if mode == "static":
        (PARENT / "service" / "memory.low").write_text(f"{args['protect_mb']}M")

    service = start(PARENT / "service", [args["service"], *map(str, args["service_args"])])
    batch = start(PARENT / "batch", [args["batch"], str(args["epoch_ms"]), *args["phases"]])
    for proc in (service, batch):
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    controller = None
    if mode == "uctl":
        controller = start(None, [args["uctl"], *map(str, args["uctl_args"])])
    elif mode == "bpf":
        result["load"] = cli("load", *args["policy"], "--name", "value", "--cgroup", "/value")

    sampler = Sampler(args["epoch_ms"] / 1e3)
    sampler.start()
    for proc in (service, batch):
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=args["timeout"])[0] for proc in (service, batch)]
    sampler.done.set()
    sampler.join()
    result["service"], result["batch"] = (json.loads(out.strip().splitlines()[-1]) for out in outputs)
    if controller:
        controller.send_signal(signal.SIGTERM)
        result["uctl"] = json.loads(controller.communicate(timeout=30)[0])
    elif mode == "bpf":
        result["stats"] = cli("stats", "value", "--json")
        result["unload"] = cli("unload", "value")
    result["samples"] = sampler.samples
    for child in CHILDREN:
        (PARENT / child).rmdir()
    PARENT.rmdir()
    return result


def main() -> None:
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
