"""Read a loaded policy's maps and globals through its BTF; render as JSON, Prometheus or a table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

from . import btf as B
from . import cpus
from . import pins
from .bpfsys import Sys
from .cgroups import CgroupNames

PERCPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ARRAY_MAP = 2
SLOT_HEAD_TYPE, SLOT_HEAD_MEMBER = "memcg_bpf_slot_head", "head"
STRUCT_OPS_MAP = 26


@dataclass
class Snapshot:
    policy: str
    globals: dict[str, Any]
    maps: dict[str, list[dict[str, Any]]]

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "globals": self.globals, "maps": self.maps}


def _sum(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        return {k: _sum([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [_sum([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, bool) or not isinstance(first, int):
        return first
    return type(first)(sum(values)) if isinstance(first, B.CgroupId) else sum(values)


class Reader:
    def __init__(self, sys: Sys) -> None:
        self.sys = sys
        self.cgroups = CgroupNames()
        self._btf: dict[int, B.Btf] = {}

    def btf(self, btf_id: int) -> B.Btf:
        if btf_id not in self._btf:
            self._btf[btf_id] = B.Btf(self.sys.kernel_btf(btf_id))
        return self._btf[btf_id]

    def present(self, value: Any) -> Any:
        """JSON-ready value: cgroup ids become {"cgroup_id": N, "path": P}."""
        if isinstance(value, B.CgroupId):
            return {"cgroup_id": int(value), "path": self.cgroups.path(int(value))}
        if isinstance(value, dict):
            return {k: self.present(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.present(v) for v in value]
        return value

    def snapshot(self, name: str) -> Snapshot:
        directory = pins.require_loaded(name)
        globals_: dict[str, Any] = {}
        maps: dict[str, list[dict[str, Any]]] = {}
        for pin in sorted((directory / "maps").iterdir()):
            fd = self.sys.obj_get(str(pin))
            try:
                info = self.sys.map_info(fd)
                if info.type == STRUCT_OPS_MAP or not info.btf_id:
                    continue
                btf = self.btf(info.btf_id)
                value_type = btf.resolve(info.btf_value_type_id) if info.btf_value_type_id else None
                if value_type is not None and value_type.kind == B.DATASEC:
                    raw = self.sys.lookup(fd, b"\0\0\0\0", info.value_size)
                    if raw is not None:
                        globals_.update(self.present(btf.decode(value_type.id, raw)))
                    continue
                maps[pin.name] = list(self.rows(fd, info, btf))
            finally:
                os.close(fd)
        return Snapshot(name, globals_, maps)

    def rows(self, fd: int, info: Any, btf: B.Btf) -> Iterator[dict[str, Any]]:
        percpu = info.type in PERCPU_TYPES
        ncpu = cpus.possible() if percpu else 1
        stride = (info.value_size + 7) & ~7
        slots = info.type == ARRAY_MAP and is_slot_table(btf, info.btf_value_type_id)
        for key in list(self.sys.keys(fd, info.key_size)):
            raw = self.sys.lookup(fd, key, stride * ncpu if percpu else info.value_size)
            if raw is None:
                continue
            if percpu:
                value = _sum([btf.decode(info.btf_value_type_id, raw, cpu * stride) for cpu in range(ncpu)])
            else:
                value = btf.decode(info.btf_value_type_id, raw)
            if slots:
                # A table of cgroups (memcg_bpf_slot()): the used slots, keyed by their cgroup.
                head = value.pop(SLOT_HEAD_MEMBER)
                if head["cgroup"]:
                    yield {"key": self.present(head["cgroup"]), "value": self.present(value)}
                continue
            yield {"key": self.present(btf.decode(info.btf_key_type_id, key)), "value": self.present(value)}


def is_slot_table(btf: B.Btf, value_type_id: int) -> bool:
    """Whether map values start with a struct memcg_bpf_slot_head (bpf_progs/memcg_bpf.h)."""
    value = btf.resolve(value_type_id)
    if value.kind != B.STRUCT or not value.members:
        return False
    first = value.members[0]
    return (first.name == SLOT_HEAD_MEMBER and first.bit_offset == 0
            and btf.resolve(first.type_id).name == SLOT_HEAD_TYPE)


# -- rendering ----------------------------------------------------------------
def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, dict[str, str], Any]]:
    """(metric suffix, extra labels, number) for every numeric leaf."""
    if isinstance(value, dict) and set(value) == {"cgroup_id", "path"}:
        yield prefix, {}, value["cgroup_id"]
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{prefix}_{k}" if prefix else k, v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            for name, labels, number in _flatten(prefix, v):
                yield name, {"index": str(i), **labels}, number
    elif isinstance(value, bool):
        yield prefix, {}, int(value)
    elif isinstance(value, (int, float)):
        yield prefix, {}, value


def _key_labels(key: Any) -> dict[str, str]:
    if isinstance(key, dict) and set(key) == {"cgroup_id", "path"}:
        return {"cgroup": key["path"] or "", "cgroup_id": str(key["cgroup_id"])}
    if isinstance(key, dict):
        labels: dict[str, str] = {}
        for k, v in key.items():
            sub = _key_labels(v)
            labels.update({f"{k}_{n}" if n != "key" else k: s for n, s in sub.items()})
        return labels
    return {"key": str(key)}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def prometheus(snapshot: Snapshot) -> str:
    """The text exposition format, for node_exporter's textfile collector."""
    samples: dict[str, list[str]] = {}
    base = f"memcg_bpf_{_sanitize(snapshot.policy)}"
    policy = {"policy": snapshot.policy}

    def add(metric: str, labels: dict[str, str], number: Any) -> None:
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in {**policy, **labels}.items())
        samples.setdefault(metric, []).append(f"{metric}{{{rendered}}} {number}")

    for name, labels, number in _flatten("", snapshot.globals):
        add(f"{base}_{_sanitize(name)}", labels, number)
    for map_name, rows in snapshot.maps.items():
        for row in rows:
            key_labels = _key_labels(row["key"])
            for name, labels, number in _flatten("", row["value"]):
                metric = f"{base}_{_sanitize(map_name)}" + (f"_{_sanitize(name)}" if name else "")
                add(metric, {**key_labels, **labels}, number)
    out = []
    for metric, lines in samples.items():
        out.append(f"# TYPE {metric} gauge")
        out.extend(lines)
    return "\n".join(out) + "\n"


def _fmt_key(key: Any) -> str:
    if isinstance(key, dict) and set(key) == {"cgroup_id", "path"}:
        return f"{key['path'] or '?'} (id {key['cgroup_id']})"
    return str(key)


def table(snapshot: Snapshot, rates: dict[tuple[str, ...], float] | None = None) -> str:
    """Human-readable: globals, then one block per map; with rates, '(+N/s)' after counters."""
    lines = [f"policy {snapshot.policy}"]

    def show(path: tuple[str, ...], label: str, value: Any) -> str:
        rate = rates.get(path) if rates else None
        return f"{label} {value}" + (f" (+{rate:.1f}/s)" if rate else "")

    if snapshot.globals:
        lines.append("globals:")
        for name, value in snapshot.globals.items():
            lines.append("  " + show(("g", name), f"{name:24}", value))
    for map_name, rows in snapshot.maps.items():
        lines.append(f"map {map_name}: {len(rows)} entries")
        for row in rows:
            key = _fmt_key(row["key"])
            lines.append(f"  {key}")
            value = row["value"]
            items = value.items() if isinstance(value, dict) else [("value", value)]
            for field, v in items:
                lines.append("    " + show(("m", map_name, key, field), f"{field:22}", v))
    return "\n".join(lines)


def numbers(snapshot: Snapshot) -> dict[tuple[str, ...], float]:
    """Numeric leaves keyed as table() keys them, for rates between two snapshots."""
    out: dict[tuple[str, ...], float] = {}
    for name, value in snapshot.globals.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[("g", name)] = value
    for map_name, rows in snapshot.maps.items():
        for row in rows:
            value = row["value"]
            if isinstance(value, dict):
                for field, v in value.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        out[("m", map_name, _fmt_key(row["key"]), field)] = v
    return out
