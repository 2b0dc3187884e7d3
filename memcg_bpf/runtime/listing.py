"""`memcg-bpf list`: loaded policies with their kernel objects and run statistics."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from memcg_bpf.runtime import cgroups, store
from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.libbpf import LibbpfError

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def stats_enabled() -> bool:
    try:
        return STATS_SYSCTL.read_text().strip() == "1"
    except OSError:
        return False


def enable_stats() -> None:
    try:
        STATS_SYSCTL.write_text("1\n")
    except OSError as exc:
        raise MemcgBpfError(f"cannot enable BPF run statistics ({STATS_SYSCTL}: {exc.strerror}): run as root") from exc


BROKEN = {"staging": "an interrupted load (pid {pid}) left this",
          "unloading": "an interrupted unload (pid {pid}) left this"}
IN_PROGRESS = {"staging": "a load in progress (pid {pid})", "unloading": "an unload in progress (pid {pid})"}


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(sys: Sys, entry: store.Entry) -> dict[str, Any]:
    """One policy; a broken one (interrupted, damaged) has "broken": why, and what is known."""
    out: dict[str, Any] = {"name": entry.name, "directory": str(entry.directory), "broken": None,
                           "in_progress": False,
                           "object": None, "source": None, "knobs": {}, "loaded_at": None,
                           "cgroup": "/", "cgroup_id": 0, "allow_override": False, "cgroup_removed": False,
                           "link_id": None, "struct_ops_map_id": None, "programs": []}
    if entry.state != "loaded":
        # list takes no lock: a live pid is a load or unload that is still running (or a reused pid).
        out["in_progress"] = alive(entry.pid)
        out["broken"] = (IN_PROGRESS if out["in_progress"] else BROKEN)[entry.state].format(pid=entry.pid)
    try:
        meta = store.read_meta(sys, entry.directory)
    except (MemcgBpfError, OSError) as exc:
        out["broken"] = out["broken"] or f"no readable metadata ({_reason(exc)})"
        meta = {}
    out.update({k: meta.get(k, out[k]) for k in ("object", "source", "knobs", "loaded_at", "cgroup", "cgroup_id",
                                                 "allow_override")})
    out["cgroup_removed"] = bool(out["cgroup_id"]) and not cgroup_exists(out["cgroup"], out["cgroup_id"])
    try:
        fd = sys.obj_get(str(entry.directory / "link"))
    except (MemcgBpfError, OSError) as exc:
        out["broken"] = out["broken"] or f"no link pinned, so not registered ({_reason(exc)})"
    else:
        try:
            link = sys.link_info(fd)
        finally:
            os.close(fd)
        out["link_id"], out["struct_ops_map_id"] = link.id, link.struct_ops_map_id
        if meta and meta.get("struct_ops_map_id") != link.struct_ops_map_id:
            out["broken"] = out["broken"] or (f"the link runs struct_ops map {link.struct_ops_map_id}, not this "
                                              f"policy's {meta.get('struct_ops_map_id')} (an interrupted --replace)")
    for prog_name, prog_id in sorted(meta.get("prog_ids", {}).items()):
        out["programs"].append(program(sys, prog_name, prog_id))
    return out


def cgroup_exists(path: str, cgroup_id: int) -> bool:
    """Is the cgroup a policy was attached to still there (same path, same id)?"""
    try:
        return cgroups.cgroup_id(cgroups.cgroup2_root() / path.lstrip("/")) == cgroup_id
    except OSError:
        return False


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, MemcgBpfError) else str(exc)


def program(sys: Sys, name: str, prog_id: int) -> dict[str, Any]:
    try:
        pfd = sys.prog_fd_by_id(prog_id)
    except LibbpfError as exc:
        if exc.errno == errno.EPERM:
            raise MemcgBpfError("memcg-bpf list needs CAP_SYS_ADMIN to look programs up by id: run it as root") \
                from exc
        return {"name": name, "id": prog_id, "gone": True}
    try:
        info = sys.prog_info(pfd)
    finally:
        os.close(pfd)
    return {"name": name, "id": info.id, "run_cnt": info.run_cnt, "run_time_ns": info.run_time_ns,
            "recursion_misses": info.recursion_misses}


def policies(sys: Sys) -> list[dict[str, Any]]:
    return [describe(sys, entry) for entry in store.entries()]


def render(entries: list[dict[str, Any]], stats_on: bool) -> str:
    if not entries:
        return "no memcg-bpf policy is loaded"
    lines = []
    for e in entries:
        if e["in_progress"]:
            lines.append(f"{e['name']}: {e['broken']}")
            continue
        if e["broken"]:
            lines.append(f"{e['name']}: BROKEN: {e['broken']}; 'memcg-bpf unload {e['name']}' removes it")
            lines.append(f"  pins   {e['directory']}")
            if e["link_id"] is not None:
                lines.append(f"  link {e['link_id']}, struct_ops map {e['struct_ops_map_id']} (still registered)")
            continue
        knobs = ", ".join(f"{k}={v}" for k, v in e["knobs"].items()) or "-"
        lines.append(f"{e['name']}: link {e['link_id']}, struct_ops map {e['struct_ops_map_id']}, "
                     f"loaded {e['loaded_at']}")
        override = ", allows override" if e["allow_override"] else ""
        if e["cgroup_removed"]:
            lines.append(f"  cgroup {e['cgroup']} (removed: the policy is inert; 'memcg-bpf unload {e['name']}')")
        else:
            lines.append(f"  cgroup {e['cgroup']}{override}")
        lines.append(f"  object {e['object']}")
        lines.append(f"  knobs  {knobs}")
        for p in e["programs"]:
            if p.get("gone"):
                lines.append(f"  prog {p['name']} (id {p['id']}): gone")
                continue
            avg = f", {p['run_time_ns'] / p['run_cnt']:.0f} ns/run" if p["run_cnt"] else ""
            lines.append(f"  prog {p['name']} (id {p['id']}): {p['run_cnt']} runs, {p['run_time_ns']} ns{avg}, "
                         f"{p['recursion_misses']} skipped")
    if not stats_on:
        lines.append("(run counts stay 0 while kernel.bpf_stats_enabled=0; pass --enable-stats)")
    if any(p.get("recursion_misses") for e in entries for p in e["programs"]):
        lines.append("(skipped: calls the kernel did not make because they would have run nested in a handler, "
                     "with interrupts disabled or in NMI; counted even without --enable-stats)")
    return "\n".join(lines)
