"""`--set KNOB=VALUE`: find `const volatile` knobs in a policy's BTF, check and encode values."""

from __future__ import annotations

from dataclasses import dataclass

from memcg_bpf.bpf import btf as B
from memcg_bpf.runtime.cgroups import cgroup2_root, cgroup_id, resolve
from memcg_bpf.errors import UsageError

RODATA = ".rodata"
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Knob:
    name: str
    type_id: int
    offset: int
    size: int
    type_name: str
    default: object


def is_knob(btf: B.Btf, var_id: int) -> bool:
    """A `const volatile` global: a VAR with global linkage whose type has both qualifiers.

    Other read-only data in .rodata (bpf_printk's `static const char ____fmt[]`,
    `static const` tables) is not a knob.
    """
    var = btf[var_id]
    return (var.kind == B.VAR and var.linkage == B.GLOBAL
            and {B.CONST, B.VOLATILE} <= btf.qualifiers(var.size_or_type))


def knobs_of(btf: B.Btf, rodata: bytes | None) -> dict[str, Knob]:
    """The knobs in the object's .rodata section, with their current (default) values."""
    sec = btf.find(RODATA, B.DATASEC)
    if sec is None:
        return {}
    out = {}
    for var_id, offset, size in sec.secinfo:
        if not is_knob(btf, var_id):
            continue
        var = btf[var_id]
        default = btf.decode(var.size_or_type, rodata, offset) if rodata is not None else None
        out[var.name] = Knob(var.name, var.size_or_type, offset, size, btf.type_name(var.size_or_type), default)
    return out


def describe_knobs(knobs: dict[str, Knob]) -> str:
    if not knobs:
        return "this policy has no knobs"
    return "valid knobs: " + ", ".join(f"{k.name} ({k.type_name}, default {fmt_default(k.default)})"
                                       for k in knobs.values())


def fmt_default(value: object) -> str:
    if isinstance(value, list):
        shown = [v for v in value if v]
        return "[" + ",".join(str(v) for v in shown) + "]"
    return str(value)


def parse_assignment(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise UsageError(f"--set {spec!r}: write KNOB=VALUE, e.g. --set reclaim_pages=64")
    return name.strip(), value.strip()


def _int_value(btf: B.Btf, type_id: int, text: str, knob: str) -> int:
    t = btf.resolve(type_id)
    if btf.is_cgid(type_id) and not text.lstrip("-").isdigit():
        root = cgroup2_root()
        try:
            path = resolve(text, root)
        except UsageError as exc:
            raise UsageError(f"knob {knob}: {exc.message}") from None
        if not path.is_dir():
            raise UsageError(f"knob {knob}: {text!r} is neither a cgroup id nor a cgroup under {root}")
        return cgroup_id(path)
    if t.kind in (B.ENUM, B.ENUM64):
        names = {v: k for k, v in t.enum_values.items()}
        if text in names:
            return names[text]
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"knob {knob} takes {kind_words(btf, type_id)}, got {text!r}") from None
    bits = t.size_or_type * 8
    signed = t.kind == B.INT and bool(t.int_encoding & B.INT_SIGNED)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise UsageError(f"knob {knob} takes {kind_words(btf, type_id)} ({low}..{high}), got {value}")
    return value


def kind_words(btf: B.Btf, type_id: int) -> str:
    t = btf.resolve(type_id)
    if btf.is_cgid(type_id):
        return "a cgroup id or cgroup path"
    if t.kind == B.INT and t.int_encoding & B.INT_BOOL:
        return "a boolean (true/false)"
    if t.kind in (B.ENUM, B.ENUM64):
        return "one of " + ", ".join(t.enum_values.values())
    if t.kind == B.INT:
        return f"a{'' if t.int_encoding & B.INT_SIGNED else 'n unsigned'} {t.size_or_type * 8}-bit integer"
    return btf.type_name(type_id)


def encode(btf: B.Btf, knob: Knob, text: str, allowed: tuple[int, int] | None = None) -> bytes:
    """The bytes to store for knob = text; UsageError naming the problem otherwise."""
    t = btf.resolve(knob.type_id)
    if t.kind == B.ARRAY:
        elem, count = t.array
        items = [item for item in text.split(",") if item.strip()]
        if len(items) > count:
            raise UsageError(f"knob {knob.name} holds at most {count} values, got {len(items)}")
        size = btf.size(elem)
        data = b"".join(_scalar(btf, elem, item.strip(), knob.name, size, allowed) for item in items)
        return data.ljust(knob.size, b"\0")
    return _scalar(btf, knob.type_id, text, knob.name, knob.size, allowed)


def _scalar(btf: B.Btf, type_id: int, text: str, name: str, size: int,
            allowed: tuple[int, int] | None) -> bytes:
    t = btf.resolve(type_id)
    if t.kind == B.INT and t.int_encoding & B.INT_BOOL:
        if text.lower() not in _BOOLS:
            raise UsageError(f"knob {name} takes a boolean (true/false), got {text!r}")
        return bytes([_BOOLS[text.lower()]]).ljust(size, b"\0")
    if t.kind not in (B.INT, B.ENUM, B.ENUM64):
        raise UsageError(f"knob {name} has type {btf.type_name(type_id)}, which --set cannot write")
    value = _int_value(btf, type_id, text, name)
    if allowed and not allowed[0] <= value <= allowed[1]:
        raise UsageError(f"knob {name} must be in {allowed[0]}..{allowed[1]}, got {value}")
    signed = t.kind == B.INT and bool(t.int_encoding & B.INT_SIGNED)
    return value.to_bytes(t.size_or_type, "little", signed=signed)
