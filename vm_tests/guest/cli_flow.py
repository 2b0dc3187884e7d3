"""Runs inside the test VM: drive the real memcg-bpf CLI end to end, report JSON.

    python3 -m vm_tests.guest.cli_flow '{"policy": ..., "memhog": ..., "knobs": [...], "observe": OBJ}'

load POLICY (with --set knobs; the value 'CGROUP' stands for the test cgroup)
-> memhog fills a cgroup under memory.max -> stats --json / --prometheus
-> list --json -> unload -> list --json, and what the kernel still holds.
With "observe", an fentry program records the nr_pages argument of
try_to_free_mem_cgroup_pages() meanwhile, to see the reclaim target.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.bpf.maptypes import MapType
from memcg_bpf.runtime.locate import find_libbpf
from memcg_bpf.runtime.cgroups import cgroup_id

from .scenarios import make_cgroup, start_in_cgroup, swap_on_zram, u64_hash



def cli(*args: str) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", *args], capture_output=True, text=True, check=False)
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
            "seconds": round(time.monotonic() - started, 3)}


def pinned() -> list[str]:
    """Everything pinned in bpffs."""
    bpffs = Path("/sys/fs/bpf")
    return sorted(str(p) for p in bpffs.rglob("*")) if bpffs.is_dir() else []


def kernel_objects(sys_: Sys) -> dict[str, list[int]]:
    maps = [info.id for info in sys_.map_infos() if info.type == MapType.STRUCT_OPS]
    return {"struct_ops_maps": maps, "progs": list(sys_.prog_ids())}


def watch(policy: str, cgroup: Path, memhog: str, frames: int = 3, limit: float = 120.0) -> str:
    """`stats --watch 1` while a looping memhog charges memory; Ctrl-C after `frames` redraws."""
    hog = start_in_cgroup(cgroup, [memhog, "16", str(limit)])
    proc = subprocess.Popen([sys.executable, "-m", "memcg_bpf", "stats", policy, "--watch", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + limit
    while out.count(b"\n--- ") < frames and time.monotonic() < deadline and proc.poll() is None:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    hog.kill()
    hog.wait()
    return (out + rest).decode(errors="replace") + f"\n[exit {proc.returncode}]"


def main() -> None:
    args = json.loads(sys.argv[1])
    policy, memhog, knobs = args["policy"], args["memhog"], args.get("knobs", [])
    bpf = Libbpf(find_libbpf())
    sys_ = Sys(bpf)
    swap_on_zram()
    cgroup = make_cgroup("demo", memory__max="24M")
    sets = []
    for knob in knobs:
        sets += ["--set", knob.replace("CGROUP", str(cgroup))]
    result: dict[str, Any] = {"cgroup_id": cgroup_id(cgroup), "before": kernel_objects(sys_)}
    result["load"] = cli("load", policy, *sets)
    result["list_loaded"] = cli("list", "--json", "--enable-stats")
    observer = None
    if args.get("observe"):
        observer = Object(bpf, args["observe"])
        observer.program("observe_charge").set_autoload(False)
        observer.load()
        fentry = observer.program("observe_reclaim").attach()
    hog = start_in_cgroup(cgroup, [memhog, "64"])
    hog.communicate(timeout=120)
    if observer:
        fentry.destroy()
        result["reclaim_targets"] = {str(k): v for k, v in u64_hash(observer.map("reclaimed")).items()}
        observer.close()
    result["hog_rc"] = hog.returncode
    result["memory_events"] = (cgroup / "memory.events").read_text()
    result["loaded_objects"] = kernel_objects(sys_)
    result["stats_json"] = cli("stats", policy, "--json")
    result["stats_prometheus"] = cli("stats", policy, "--prometheus")
    result["stats_table"] = cli("stats", policy)
    result["list_after_run"] = cli("list", "--json")
    if args.get("watch"):
        result["watch"] = watch(policy, cgroup, memhog)
    result["unload"] = cli("unload", policy)
    result["list_unloaded"] = cli("list", "--json")
    deadline = time.monotonic() + 10
    while True:  # the kernel frees struct_ops maps after an RCU grace period
        result["after"] = kernel_objects(sys_)
        if result["after"] == result["before"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    result["pins_left"] = pinned()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
