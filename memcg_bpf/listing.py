"""`memcg-bpf list`: loaded policies with their kernel objects and run statistics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import pins
from .bpfsys import Sys
from .errors import MemcgBpfError
from .libbpf import LibbpfError

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


def describe(sys: Sys, name: str) -> dict[str, Any]:
    directory = pins.policy_dir(name)
    meta = pins.read_meta(sys, directory)
    entry: dict[str, Any] = {
        "name": name,
        "object": meta.get("object"),
        "source": meta.get("source"),
        "knobs": meta.get("knobs", {}),
        "loaded_at": meta.get("loaded_at"),
        "link_id": None,
        "struct_ops_map_id": None,
        "programs": [],
    }
    fd = sys.obj_get(str(directory / "link"))
    try:
        link = sys.link_info(fd)
        entry["link_id"], entry["struct_ops_map_id"] = link.id, link.struct_ops_map_id
    finally:
        os.close(fd)
    for prog_name, prog_id in sorted(meta.get("prog_ids", {}).items()):
        try:
            pfd = sys.prog_fd_by_id(prog_id)
        except LibbpfError:
            entry["programs"].append({"name": prog_name, "id": prog_id, "gone": True})
            continue
        try:
            info = sys.prog_info(pfd)
        finally:
            os.close(pfd)
        entry["programs"].append({"name": prog_name, "id": info.id, "run_cnt": info.run_cnt,
                                  "run_time_ns": info.run_time_ns, "recursion_misses": info.recursion_misses})
    return entry


def policies(sys: Sys) -> list[dict[str, Any]]:
    return [describe(sys, name) for name in pins.names()]


def render(entries: list[dict[str, Any]], stats_on: bool) -> str:
    if not entries:
        return "no memcg-bpf policy is loaded"
    lines = []
    for e in entries:
        knobs = ", ".join(f"{k}={v}" for k, v in e["knobs"].items()) or "-"
        lines.append(f"{e['name']}: link {e['link_id']}, struct_ops map {e['struct_ops_map_id']}, "
                     f"loaded {e['loaded_at']}")
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
