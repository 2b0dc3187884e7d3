"""What a field of a policy's map value or global means, from its BTF: counter, gauge, timestamp, ...

One rule decides both how the per-CPU copies of a value are combined and
how Prometheus types the field:

- An integer is a COUNTER (it only grows; summed over CPUs; a Prometheus
  counter) when it is in a map value or a writable global (.bss/.data),
  and a GAUGE (a level; summed over CPUs; a Prometheus gauge) when it is a
  knob (.rodata).
- An integer whose name marks a point in time (ends in `_ns`, `_ts`,
  `_time`, or is `ts`, `time`, `timestamp`) is a TIMESTAMP: the maximum
  (latest) over CPUs, a Prometheus gauge.
- A BTF decl tag on the field or variable overrides the name rule:
  `__attribute__((btf_decl_tag("memcg_bpf:counter")))`, `...:gauge` or
  `...:timestamp` (memcg_bpf.h: MEMCG_BPF_COUNTER, MEMCG_BPF_GAUGE,
  MEMCG_BPF_TIMESTAMP). Tag a total duration `wait_ns` as a counter.
- A bool is a FLAG: true if it is on any CPU; a Prometheus gauge (0/1).
- A float is a FLOAT: never summed, the first CPU's non-zero value; a gauge.
- Cgroup ids (memcg_bpf_cgid_t), enums, pointers, char strings and
  anything else are IDENTITY: never summed, the first CPU's non-zero value;
  not exported to Prometheus (they name things, they do not measure them).

Elements of an array take the kind of the array (a histogram of counters
is counters).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from memcg_bpf.bpf import btf as B

TAG_PREFIX = "memcg_bpf:"
_TIME_SUFFIXES = ("_ns", "_ts", "_time")
_TIME_NAMES = {"ts", "time", "timestamp"}


class Kind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    TIMESTAMP = "timestamp"
    FLAG = "flag"
    FLOAT = "float"
    IDENTITY = "identity"

    @property
    def prometheus_type(self) -> str | None:
        """'counter', 'gauge', or None for a field that is not exported."""
        if self is Kind.COUNTER:
            return "counter"
        return None if self is Kind.IDENTITY else "gauge"


_TAGGED = {f"{TAG_PREFIX}{k.value}": k for k in (Kind.COUNTER, Kind.GAUGE, Kind.TIMESTAMP)}


@dataclass(frozen=True)
class Many:
    """The schema of an array's elements."""

    element: "Schema"


Schema = Union[Kind, Many, dict[str, "Schema"]]


def schema(btf: B.Btf, type_id: int, name: str, tags: list[str], integers: Kind) -> Schema:
    """The kinds of a value of type type_id, shaped as Btf.decode shapes the value.

    name and tags are the field's or variable's; integers is the kind of a
    plain integer (COUNTER in map values and writable globals, GAUGE for knobs).
    """
    t = btf.resolve(type_id)
    if t.kind == B.STRUCT or t.kind == B.UNION:
        return {m.name or f"anon{m.bit_offset}": schema(btf, m.type_id, m.name, btf.tags(t.id, i), integers)
                for i, m in enumerate(t.members)}
    if t.kind == B.DATASEC:
        out: dict[str, Schema] = {}
        for var_id, _off, _size in t.secinfo:
            var = btf[var_id]
            out[var.name] = schema(btf, var.size_or_type, var.name, btf.tags(var_id), integers)
        return out
    if t.kind == B.ARRAY and not btf.is_string(type_id):
        return Many(schema(btf, t.array[0], name, tags, integers))
    return leaf_kind(btf, type_id, name, tags, integers)


def leaf_kind(btf: B.Btf, type_id: int, name: str, tags: list[str], integers: Kind) -> Kind:
    t = btf.resolve(type_id)
    if t.kind == B.INT and t.int_encoding & B.INT_BOOL:
        return Kind.FLAG
    if t.kind == B.FLOAT:
        return Kind.FLOAT
    if t.kind != B.INT or btf.is_cgid(type_id):
        return Kind.IDENTITY
    for tag in tags:
        if tag in _TAGGED:
            return _TAGGED[tag]
    if name in _TIME_NAMES or name.endswith(_TIME_SUFFIXES):
        return Kind.TIMESTAMP
    return integers


def combine(shape: Schema, copies: list[Any]) -> Any:
    """One value from the per-CPU copies of a value, by the rule in the module docstring."""
    first = copies[0]
    if isinstance(shape, dict) and isinstance(first, dict):
        return {k: combine(shape.get(k, Kind.IDENTITY), [c[k] for c in copies]) for k in first}
    if isinstance(shape, Many) and isinstance(first, list):
        return [combine(shape.element, [c[i] for c in copies]) for i in range(len(first))]
    if shape in (Kind.COUNTER, Kind.GAUGE) and all(isinstance(c, int) for c in copies):
        return sum(copies)
    if shape is Kind.TIMESTAMP and all(isinstance(c, int) for c in copies):
        return max(copies)
    if shape is Kind.FLAG:
        return any(copies)
    return next((c for c in copies if _nonzero(c)), first)


def _nonzero(value: Any) -> bool:
    return value.number != 0 if isinstance(value, B.Enumerator) else bool(value)


def flat(shape: Schema, prefix: str = "") -> dict[str, Kind]:
    """Kinds by flattened field name: struct members joined with '_', array elements under the array's name."""
    if isinstance(shape, dict):
        out: dict[str, Kind] = {}
        for k, v in shape.items():
            out.update(flat(v, f"{prefix}_{k}" if prefix else k))
        return out
    if isinstance(shape, Many):
        return flat(shape.element, prefix)
    return {prefix: shape}
