"""Read a loaded policy's maps and globals through its BTF; render as JSON or a table.

What is shown:
- Globals: the writable globals (.bss, .data) and the knobs (`const volatile`
  globals in .rodata); other read-only data (bpf_printk formats) is not.
- Maps: every entry, key and value decoded through BTF; cgroup ids as
  {"cgroup_id", "path"}; a slot table (memcg_bpf_slot()) by its used slots.
- Per-CPU maps (PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH,
  PERCPU_CGROUP_STORAGE) show one value per entry, combined from every
  possible CPU's copy by the rule in memcg_bpf/runtime/fields.py: integer counters
  and gauges are summed, timestamps take the latest, bools are true if true
  on any CPU, and cgroup ids, enums, floats, pointers and strings take the
  first CPU's non-zero value.
- A map without BTF for its keys or values shows them as hex bytes, and a map
  of a type memcg-bpf cannot read shows no entries; both get a note.

Prometheus rendering is in memcg_bpf/runtime/prom.py.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from memcg_bpf.bpf import btf as B
from memcg_bpf.runtime import store
from memcg_bpf.bpf.syscalls import MapInfo, NotAMap, Sys
from memcg_bpf.runtime.cgroups import CgroupNames
from memcg_bpf.errors import DamagedPolicy, MemcgBpfError, PolicyGone
from memcg_bpf.runtime.fields import Kind, Schema, combine, flat, schema
from memcg_bpf.runtime.knobs import RODATA, is_knob
from memcg_bpf.bpf.libbpf import LibbpfError
from memcg_bpf.bpf.maptypes import MapType, UnreadableMap

SLOT_HEAD_TYPE, SLOT_HEAD_MEMBER = "memcg_bpf_slot_head", "head"
NO_BTF_NOTE = "no BTF for its {what}: shown as hex bytes"


@dataclass
class Snapshot:
    policy: str
    globals: dict[str, Any]
    maps: dict[str, list[dict[str, Any]]]
    kinds: dict[str, Kind] = field(default_factory=dict)  # by metric name: "global", "map_field"
    notes: dict[str, str] = field(default_factory=dict)    # by map name

    def as_json(self) -> dict[str, Any]:
        out = {"policy": self.policy, "globals": self.globals, "maps": self.maps}
        return {**out, "notes": self.notes} if self.notes else out


def metric_name(map_name: str, field_name: str) -> str:
    """The name a map's field goes by in Snapshot.kinds and in Prometheus (before the policy prefix)."""
    return f"{map_name}_{field_name}" if field_name else map_name


class Reader:
    """Snapshots of loaded policies, pinned under root."""

    def __init__(self, sys: Sys, root: Path = store.ROOT, cgroups: CgroupNames | None = None) -> None:
        self.sys = sys
        self.root = root
        self.cgroups = cgroups or CgroupNames()
        self._btf: dict[int, B.Btf] = {}

    def btf(self, btf_id: int) -> B.Btf:
        if btf_id not in self._btf:
            self._btf[btf_id] = B.Btf(self.sys.kernel_btf(btf_id))
        return self._btf[btf_id]

    def present(self, value: Any) -> Any:
        """JSON-ready value: cgroup ids become {"cgroup_id": N, "path": P}.

        An array of cgroup ids (a knob such as cgroup_ids) shows its set
        entries only: its zeros are unused slots, not the root.
        """
        if isinstance(value, B.CgroupId):
            return {"cgroup_id": int(value), "path": self.cgroups.path(int(value))}
        if isinstance(value, dict):
            return {k: self.present(v) for k, v in value.items()}
        if isinstance(value, list):
            if value and all(isinstance(v, B.CgroupId) for v in value):
                value = [v for v in value if v]
            return [self.present(v) for v in value]
        return value

    def snapshot(self, name: str) -> Snapshot:
        """Every global and map of policy name; NotLoaded, PolicyGone or DamagedPolicy as one-line errors."""
        directory = store.require_loaded(name, self.root)
        if not (directory / "link").exists():
            raise DamagedPolicy(name, f"{directory} has no link pin")
        try:
            store.read_meta(self.sys, directory)
            return self._read(name, directory)
        except (OSError, NotAMap, LibbpfError) as exc:
            if not directory.exists() or not (directory / "link").exists():
                raise PolicyGone(name) from None
            if isinstance(exc, LibbpfError) and exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise
            problem = exc.message if isinstance(exc, MemcgBpfError) else f"{exc.filename}: {exc.strerror}"
            raise DamagedPolicy(name, problem) from None

    def _read(self, name: str, directory: Path) -> Snapshot:
        snap = Snapshot(name, {}, {})
        for pin in sorted((directory / "maps").iterdir()):
            fd, info = self.sys.open_map(str(pin))
            try:
                self._read_map(snap, pin.name, fd, info)
            finally:
                os.close(fd)
        return snap

    def _read_map(self, snap: Snapshot, pin_name: str, fd: int, info: MapInfo) -> None:
        if info.type == MapType.STRUCT_OPS:
            return
        btf = self.btf(info.btf_id) if info.btf_id else None
        value_type = btf.resolve(info.btf_value_type_id) if btf and info.btf_value_type_id else None
        if btf and value_type is not None and value_type.kind == B.DATASEC:
            self._read_globals(snap, btf, value_type, fd, info)
            return
        try:
            rows = list(self.rows(fd, info, btf))
        except UnreadableMap as exc:
            snap.maps[pin_name], snap.notes[pin_name] = [], exc.message
            return
        snap.maps[pin_name] = rows
        if btf is None or not info.btf_value_type_id or not info.btf_key_type_id:
            what = "keys and values" if btf is None else "values" if not info.btf_value_type_id else "keys"
            snap.notes[pin_name] = NO_BTF_NOTE.format(what=what)
        if btf is not None and info.btf_value_type_id:
            shape = value_schema(btf, info)
            snap.kinds.update({metric_name(pin_name, k): v for k, v in flat(shape).items()})

    def _read_globals(self, snap: Snapshot, btf: B.Btf, sec: B.Type, fd: int, info: MapInfo) -> None:
        raw = self.sys.lookup(fd, b"\0\0\0\0", info)
        if raw is None:
            return
        knobs_only = sec.name == RODATA or sec.name.startswith(RODATA + ".")  # .rodata.cst8, .rodata.str1.1
        integers = Kind.GAUGE if knobs_only else Kind.COUNTER
        for var_id, offset, _size in sec.secinfo:
            if knobs_only and not is_knob(btf, var_id):
                continue
            var = btf[var_id]
            snap.globals[var.name] = self.present(btf.decode(var.size_or_type, raw, offset))
            shape = schema(btf, var.size_or_type, var.name, btf.tags(var_id), integers)
            snap.kinds.update(flat(shape, var.name))

    def rows(self, fd: int, info: MapInfo, btf: B.Btf | None) -> Iterator[dict[str, Any]]:
        layout = self.sys.value_layout(info)
        value_id = info.btf_value_type_id if btf else 0
        key_id = info.btf_key_type_id if btf else 0
        shape = value_schema(btf, info) if btf and value_id else Kind.IDENTITY
        slots = btf is not None and info.type == MapType.ARRAY and is_slot_table(btf, value_id)
        for key in list(self.sys.keys(fd, info.key_size)):
            raw = self.sys.lookup(fd, key, info)
            if raw is None:
                continue
            copies: list[Any] = [btf.decode(value_id, part) if btf and value_id else part.hex()
                                 for part in layout.split(raw)]
            value = combine(shape, copies) if len(copies) > 1 else copies[0]
            if slots:
                # A table of cgroups (memcg_bpf_slot()): the used slots, keyed by their cgroup.
                head = value.pop(SLOT_HEAD_MEMBER)
                if head["cgroup"]:
                    yield {"key": self.present(head["cgroup"]), "value": self.present(value)}
                continue
            decoded_key = btf.decode(key_id, key) if btf and key_id else key.hex()
            yield {"key": self.present(decoded_key), "value": self.present(value)}


def value_schema(btf: B.Btf, info: MapInfo) -> Schema:
    """The kinds of a map's value fields (integers are counters); a slot table's head is left out."""
    shape = schema(btf, info.btf_value_type_id, "", [], Kind.COUNTER)
    if isinstance(shape, dict) and info.type == MapType.ARRAY and is_slot_table(btf, info.btf_value_type_id):
        shape = {k: v for k, v in shape.items() if k != SLOT_HEAD_MEMBER}
    return shape


def is_slot_table(btf: B.Btf, value_type_id: int) -> bool:
    """Whether map values start with a struct memcg_bpf_slot_head (bpf_progs/memcg_bpf.h)."""
    value = btf.resolve(value_type_id)
    if value.kind != B.STRUCT or not value.members:
        return False
    first = value.members[0]
    return (first.name == SLOT_HEAD_MEMBER and first.bit_offset == 0
            and btf.resolve(first.type_id).name == SLOT_HEAD_TYPE)


# -- rendering ----------------------------------------------------------------
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
            for name, v in items:
                lines.append("    " + show(("m", map_name, key, name), f"{name:22}", v))
        if map_name in snapshot.notes:
            lines.append(f"  ({snapshot.notes[map_name]})")
    return "\n".join(lines)


def numbers(snapshot: Snapshot) -> dict[tuple[str, ...], float]:
    """Numeric leaves keyed as table() keys them, for rates between two snapshots (counters only, if known)."""
    def counts(metric: str, value: Any) -> bool:
        kind = snapshot.kinds.get(metric, Kind.COUNTER)
        return kind is Kind.COUNTER and isinstance(value, (int, float)) and not isinstance(value, bool)

    out: dict[tuple[str, ...], float] = {}
    for name, value in snapshot.globals.items():
        if counts(name, value):
            out[("g", name)] = value
    for map_name, rows in snapshot.maps.items():
        for row in rows:
            value = row["value"]
            if isinstance(value, dict):
                for name, v in value.items():
                    if counts(metric_name(map_name, name), v):
                        out[("m", map_name, _fmt_key(row["key"]), name)] = v
    return out
