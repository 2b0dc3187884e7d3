"""Runs inside the test VM: misuse of the memcg-bpf CLI, reported as JSON.

    python3 -m vm_tests.guest.misuse bad_inputs '{"objects": {NAME: PATH}}'
    python3 -m vm_tests.guest.misuse kill_load '{}'
    python3 -m vm_tests.guest.misuse concurrent_loads '{"rounds": N}'

bad_inputs runs every row of vm_tests/bad_inputs.py: prepares its setup,
runs the command as the given user, undoes the setup, and reports the exit
code, stderr, and whether pins or kernel objects were left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.bpf.libbpf import Libbpf, Object
from memcg_bpf.bpf.maptypes import MapType
from memcg_bpf.runtime.store import LOAD_STEPS, UNLOAD_STEPS
from memcg_bpf.runtime.locate import find_libbpf

from ..bad_inputs import ROWS, BadInput
from .cli_flow import cli, kernel_objects, pinned

BPFFS = Path("/sys/fs/bpf")
PINS = BPFFS / "memcg-bpf"
USERS = {
    "root": [],
    "nobody": ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"],
    "no-caps": ["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin"],
    "no-sys-admin": ["setpriv", "--bounding-set=-sys_admin"],
}
BROKEN_C = "int broken( {\n"


@contextmanager
def prepared(setup: str, bpf: Libbpf, objects: dict[str, str]) -> Iterator[None]:
    if setup == "telemetry":
        assert cli("load", "telemetry")["rc"] == 0
        try:
            yield
        finally:
            assert cli("unload", "--all")["rc"] == 0
    elif setup == "foreign":
        with Object(bpf, objects["observe"]) as obj:
            obj.load()
            link = obj.struct_ops_maps()[0].attach_struct_ops()
            try:
                yield
            finally:
                link.destroy()
    elif setup == "no-bpffs":
        subprocess.run(["umount", str(BPFFS)], check=True)
        try:
            yield
        finally:
            subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], check=True)
    elif setup == "bpffs-0700":
        mode = BPFFS.stat().st_mode & 0o7777
        BPFFS.chmod(0o700)
        try:
            yield
        finally:
            BPFFS.chmod(mode)
    elif setup == "damaged":
        (PINS / "damaged").mkdir(parents=True)
        try:
            yield
        finally:
            shutil.rmtree(PINS)
    elif setup in ("fake-object", "broken-c"):
        path = Path("/tmp/fake.bpf.o") if setup == "fake-object" else Path("/tmp/broken.bpf.c")
        path.write_text("not an ELF file\n" if setup == "fake-object" else BROKEN_C)
        try:
            yield
        finally:
            path.unlink()
    else:
        assert setup == "", setup
        yield


def run_row(row: BadInput, objects: dict[str, str]) -> dict[str, Any]:
    argv = [objects[a[5:-1]] if a.startswith("{obj:") else a for a in row.argv]
    env = {**os.environ, **dict(row.env)}
    proc = subprocess.run([*USERS[row.user], sys.executable, "-m", "memcg_bpf", *argv],
                          capture_output=True, text=True, check=False, env=env)
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def bad_inputs(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    sys_ = Sys(bpf)
    results = {}
    for row in ROWS:
        before = (pinned(), kernel_objects(sys_))
        with prepared(row.setup, bpf, args["objects"]):
            during = pinned()
            result = run_row(row, args["objects"])
            result["pins_changed"] = pinned() != during
        deadline = time.monotonic() + 10   # freed programs and maps go away after an RCU grace period
        while (pinned(), kernel_objects(sys_)) != before and time.monotonic() < deadline:
            time.sleep(0.2)
        result["left_behind"] = (pinned(), kernel_objects(sys_)) != before
        results[row.id] = result
    return results


def registrations(sys_: Sys) -> set[int]:
    """Ids of the memcg_ops struct_ops maps some link runs."""
    struct_ops = {info.id for info in sys_.map_infos() if info.type == MapType.STRUCT_OPS}
    return {link.struct_ops_map_id for link in sys_.link_infos() if link.struct_ops_map_id in struct_ops}


def pinned_links(sys_: Sys) -> set[int]:
    found = set()
    for path in PINS.rglob("link") if PINS.is_dir() else []:
        fd = sys_.obj_get(str(path))
        try:
            found.add(sys_.link_info(fd).struct_ops_map_id)
        finally:
            os.close(fd)
    return found


def kill_load(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """A load and an unload killed (SIGKILL) at each of their steps; after each: list, and who is registered."""
    sys_ = Sys(bpf)
    rounds: list[dict[str, Any]] = []
    for step in (*LOAD_STEPS, *UNLOAD_STEPS):
        command = step.split(":")[0]
        if command == "unload":
            assert cli("load", "telemetry")["rc"] == 0
        proc = subprocess.run([sys.executable, "-m", "memcg_bpf", command, "telemetry"],
                              env={**os.environ, "MEMCG_BPF_KILL_AT": step}, capture_output=True, check=False)
        listing = cli("list", "--json")
        entries = json.loads(listing["stdout"]) if listing["rc"] == 0 else None
        unnamed = registrations(sys_) - pinned_links(sys_)
        text = cli("list")["stdout"]
        cleanup = cli("unload", "--all") if entries else {"rc": 0, "stdout": ""}
        rounds.append({"step": step, "rc": proc.returncode, "list_rc": listing["rc"],
                       "list_stderr": listing["stderr"][-500:], "list_text": text,
                       "entries": [{"name": e["name"], "broken": e["broken"], "link_id": e["link_id"]}
                                   for e in entries or []],
                       "unnamed_registrations": sorted(unnamed), "cleanup_rc": cleanup["rc"],
                       "cleanup_stdout": cleanup["stdout"],
                       "after_cleanup": pinned(), "registered_after_cleanup": sorted(registrations(sys_))})
    # The next load clears what a killed one left (still registered) and takes its place.
    subprocess.run([sys.executable, "-m", "memcg_bpf", "load", "telemetry"],
                   env={**os.environ, "MEMCG_BPF_KILL_AT": "load:link-pinned"}, capture_output=True, check=False)
    next_load = cli("load", "telemetry")
    gc = {"load_rc": next_load["rc"], "load_stderr": next_load["stderr"][-500:],
          "entries": json.loads(cli("list", "--json")["stdout"]), "cleanup_rc": cli("unload", "--all")["rc"]}
    return {"rounds": rounds, "gc": gc}


def waiting_for_flock(pid: int) -> bool:
    """PID is blocked on a flock: /proc/locks lists waiters as "N: -> FLOCK ADVISORY WRITE PID ..."."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] == ["->", "FLOCK"] and fields[5] == str(pid):
            return True
    return False


def concurrent_loads(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """Two loads at once (different names): the first holds its critical section (registered, not yet
    renamed into place) until the second waits for the lock; exactly one may win, and the other must
    name the winner."""
    out = []
    for _ in range(args["rounds"]):
        hold = Path("/tmp/memcg-bpf-hold-first")
        hold.touch()
        first = subprocess.Popen([sys.executable, "-m", "memcg_bpf", "load", "telemetry", "--name", "first"],
                                 env={**os.environ, "MEMCG_BPF_PAUSE_AT": "load:registered",
                                      "MEMCG_BPF_PAUSE_WHILE": str(hold)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not any(PINS.glob("+staging-*/meta")) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        paused = any(PINS.glob("+staging-*/meta"))
        during = [{k: e[k] for k in ("name", "broken", "in_progress")}
                  for e in json.loads(cli("list", "--json")["stdout"])]
        second = subprocess.Popen([sys.executable, "-m", "memcg_bpf", "load", "noop", "--name", "second"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not waiting_for_flock(second.pid) and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second_waited = waiting_for_flock(second.pid)
        hold.unlink()
        results = [{"name": name, "rc": p.wait(), "stderr": p.communicate()[1]}
                   for name, p in (("first", first), ("second", second))]
        listing = json.loads(cli("list", "--json")["stdout"])
        out.append({"paused": paused, "during": during, "second_waited": second_waited, "results": results,
                    "loaded": [e["name"] for e in listing],
                    "cleanup_rc": cli("unload", "--all")["rc"], "after": pinned()})
    return {"rounds": out}


def follow_holder_advice(args: dict[str, Any], bpf: Libbpf) -> dict[str, Any]:
    """memcg_ops held by a link memcg-bpf did not make: run the command the error advises, then load."""
    with Object(bpf, args["objects"]["observe"]) as obj:
        obj.load()
        link = obj.struct_ops_maps()[0].attach_struct_ops()
        refused = cli("load", "telemetry")
        advice = re.search(r"'bpftool (link detach id \d+)'", refused["stderr"])
        followed = subprocess.run([args["bpftool"], *advice.group(1).split()], capture_output=True, text=True,
                                  check=False) if advice else None
        loaded = cli("load", "telemetry")
        cleanup = cli("unload", "--all")
        link.destroy()
    return {"refused": refused, "advice": advice.group(0) if advice else None,
            "followed_rc": followed.returncode if followed else None,
            "followed_stderr": followed.stderr if followed else "", "loaded": loaded, "cleanup": cleanup}


CASES: dict[str, Callable[[dict[str, Any], Libbpf], dict[str, Any]]] = {
    "bad_inputs": bad_inputs, "kill_load": kill_load, "concurrent_loads": concurrent_loads,
    "follow_holder_advice": follow_holder_advice,
}


def main() -> None:
    case, args = sys.argv[1], json.loads(sys.argv[2])
    bpf = Libbpf(find_libbpf())
    print(json.dumps(CASES[case](args, bpf)))


if __name__ == "__main__":
    main()
