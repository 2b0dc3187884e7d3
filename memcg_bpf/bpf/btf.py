"""A reader for raw BTF and a decoder of values through it (pure Python).

`memcg-bpf stats` and `load --set` use it: every map value, key and global
of a policy is decoded from the policy's own BTF, so no policy needs a
hand-written decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcg_bpf.errors import MemcgBpfError

# The running kernel's BTF.
VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

MAGIC = 0xEB9F
CGID_TYPEDEF = "memcg_bpf_cgid_t"

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, \
    VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
_QUALIFIERS = {VOLATILE, CONST, RESTRICT, TYPE_TAG}  # modifiers other than typedef
STATIC, GLOBAL, EXTERN = range(3)  # VAR linkage
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4


@dataclass
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class Type:
    id: int
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kind_flag: bool
    int_encoding: int = 0
    int_bits: int = 0
    array: tuple[int, int] = (0, 0)  # element type, count
    members: list[Member] = field(default_factory=list)
    enum_values: dict[int, str] = field(default_factory=dict)
    secinfo: list[tuple[int, int, int]] = field(default_factory=list)  # var type id, offset, size
    linkage: int = 0  # VAR: STATIC, GLOBAL or EXTERN
    component: int = -1  # DECL_TAG: the member it tags, -1 for the type or variable itself


class CgroupId(int):
    """An integer that was typed memcg_bpf_cgid_t in the policy."""


class Enumerator(str):
    """The name of an enum value (a str), with its number."""

    number: int

    def __new__(cls, name: str, number: int) -> "Enumerator":
        self = super().__new__(cls, name)
        self.number = number
        return self


class Btf:
    """Types of one BTF blob, by id (1-based; 0 is void)."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < 24:
            raise MemcgBpfError("BTF data is truncated")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", raw, 0)
        if magic != MAGIC:
            raise MemcgBpfError("not BTF data (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", raw, 8)
        self._strings = raw[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types: list[Type | None] = [None]
        self._parse(raw[hdr_len + type_off: hdr_len + type_off + type_len])
        self._by_name: dict[tuple[str, int], int] = {}
        self._tags: dict[tuple[int, int], list[str]] = {}
        for t in self.types[1:]:
            assert t is not None
            self._by_name.setdefault((t.name, t.kind), t.id)
            if t.kind == DECL_TAG:
                self._tags.setdefault((t.size_or_type, t.component), []).append(t.name)

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode(errors="replace")

    def _parse(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            t = Type(len(self.types), kind, self._str(name_off), size_or_type, vlen, bool(info >> 31))
            if kind == INT:
                (enc,) = struct.unpack_from("<I", data, pos)
                t.int_encoding, t.int_bits = (enc >> 24) & 0xF, enc & 0xFF
                pos += 4
            elif kind == ARRAY:
                elem, _index, nelems = struct.unpack_from("<III", data, pos)
                t.array = (elem, nelems)
                pos += 12
            elif kind in (STRUCT, UNION):
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos)
                    pos += 12
                    if t.kind_flag:
                        t.members.append(Member(self._str(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        t.members.append(Member(self._str(m_name), m_type, m_off))
            elif kind == ENUM:
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", data, pos)
                    pos += 8
                    t.enum_values[e_val] = self._str(e_name)
            elif kind == ENUM64:
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<III", data, pos)
                    pos += 12
                    t.enum_values[(hi << 32) | lo] = self._str(e_name)
            elif kind == FUNC_PROTO:
                pos += 8 * vlen
            elif kind == VAR:
                (t.linkage,) = struct.unpack_from("<I", data, pos)
                pos += 4
            elif kind == DECL_TAG:
                (t.component,) = struct.unpack_from("<i", data, pos)
                pos += 4
            elif kind == DATASEC:
                for _ in range(vlen):
                    t.secinfo.append(struct.unpack_from("<III", data, pos))
                    pos += 12
            self.types.append(t)

    def __getitem__(self, type_id: int) -> Type:
        t = self.types[type_id]
        if t is None:
            raise MemcgBpfError(f"BTF type {type_id} is void")
        return t

    def find(self, name: str, kind: int) -> Type | None:
        type_id = self._by_name.get((name, kind))
        return self.types[type_id] if type_id else None

    def resolve(self, type_id: int) -> Type:
        """Skip typedefs and modifiers."""
        t = self[type_id]
        while t.kind in _MODIFIERS:
            t = self[t.size_or_type]
        return t

    def qualifiers(self, type_id: int) -> set[int]:
        """The qualifier kinds (CONST, VOLATILE, ...) on the way from type_id to its base (element) type."""
        found: set[int] = set()
        t = self[type_id]
        while t.kind in _MODIFIERS or t.kind == ARRAY:  # `const volatile T x[N]` qualifies the elements
            if t.kind in _QUALIFIERS:
                found.add(t.kind)
            t = self[t.array[0] if t.kind == ARRAY else t.size_or_type]
        return found

    def tags(self, type_id: int, component: int = -1) -> list[str]:
        """BTF decl tags (__attribute__((btf_decl_tag("..."))) on a variable, type, or one of its members."""
        return self._tags.get((type_id, component), [])

    def is_string(self, type_id: int) -> bool:
        """An array of char, as bpftool's is_str_array: clang encodes `char` as a SIGNED int named "char"."""
        t = self.resolve(type_id)
        if t.kind != ARRAY or not t.array[1]:
            return False
        elem = self[t.array[0]]
        while elem.kind in _QUALIFIERS:  # a typedef (__s8, __u8) is not a char
            elem = self[elem.size_or_type]
        return (elem.kind == INT and elem.size_or_type == 1
                and (bool(elem.int_encoding & INT_CHAR) or elem.name == "char"))

    def is_cgid(self, type_id: int) -> bool:
        t = self[type_id]
        while t.kind in _MODIFIERS:
            if t.kind == TYPEDEF and t.name == CGID_TYPEDEF:
                return True
            t = self[t.size_or_type]
        return False

    def size(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t.kind in (INT, ENUM, ENUM64, STRUCT, UNION, FLOAT, DATASEC):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return self.size(t.array[0]) * t.array[1]
        raise MemcgBpfError(f"BTF type {t.name or t.id} has no size")

    def type_name(self, type_id: int) -> str:
        """A C-like name for messages: 'u32', 'memcg_bpf_cgid_t[16]', 'struct x'."""
        t = self[type_id]
        if t.kind in (VOLATILE, CONST, RESTRICT, TYPE_TAG):
            return self.type_name(t.size_or_type)
        if t.kind == ARRAY:
            return f"{self.type_name(t.array[0])}[{t.array[1]}]"
        if t.kind in (STRUCT, UNION):
            return f"{'struct' if t.kind == STRUCT else 'union'} {t.name or '(anon)'}"
        if t.kind == PTR:
            return "pointer"
        return t.name or f"type {t.id}"

    # -- decoding ----------------------------------------------------------
    def decode(self, type_id: int, data: bytes, offset: int = 0) -> Any:
        """A Python value for the bytes of a value of type type_id."""
        cgid = self.is_cgid(type_id)
        t = self.resolve(type_id)
        if t.kind == INT:
            if t.int_encoding & INT_BOOL:
                return data[offset] != 0
            size = t.size_or_type
            value = int.from_bytes(data[offset:offset + size], "little", signed=bool(t.int_encoding & INT_SIGNED))
            return CgroupId(value) if cgid else value
        if t.kind in (ENUM, ENUM64):
            value = int.from_bytes(data[offset:offset + t.size_or_type], "little", signed=t.kind_flag)
            return _enumerator(t, value)
        if t.kind == PTR:
            return int.from_bytes(data[offset:offset + 8], "little")
        if t.kind == FLOAT:
            fmt = {4: "<f", 8: "<d"}.get(t.size_or_type)
            return struct.unpack_from(fmt, data, offset)[0] if fmt else None
        if t.kind == ARRAY:
            elem, count = t.array
            if self.is_string(type_id):
                text = _c_string(data[offset:offset + count])
                if text is not None:
                    return text
            step = self.size(elem)
            return [self.decode(elem, data, offset + i * step) for i in range(count)]
        if t.kind in (STRUCT, UNION):
            out = {}
            for m in t.members:
                if m.bitfield_size:
                    out[m.name] = self._bitfield(m, data[offset:offset + t.size_or_type])
                else:
                    out[m.name or f"anon{m.bit_offset}"] = self.decode(m.type_id, data, offset + m.bit_offset // 8)
            return out
        if t.kind == DATASEC:
            out = {}
            for var_id, var_off, _size in t.secinfo:
                var = self[var_id]
                out[var.name] = self.decode(var.size_or_type, data, offset + var_off)
            return out
        return data[offset:offset + self.size(type_id)].hex()

    def _bitfield(self, m: Member, struct_bytes: bytes) -> Any:
        raw = int.from_bytes(struct_bytes, "little")
        value = (raw >> m.bit_offset) & ((1 << m.bitfield_size) - 1)
        base = self.resolve(m.type_id)
        signed = ((base.kind == INT and bool(base.int_encoding & INT_SIGNED))
                  or (base.kind in (ENUM, ENUM64) and base.kind_flag))
        if signed and value >> (m.bitfield_size - 1):
            value -= 1 << m.bitfield_size
        if base.kind == INT and base.int_encoding & INT_BOOL:
            return value != 0
        if base.kind in (ENUM, ENUM64):
            return _enumerator(base, value)
        return value


def _enumerator(t: Type, value: int) -> Any:
    """The enumerator named for value, or the number if it has no name."""
    return Enumerator(t.enum_values[value], value) if value in t.enum_values else value


def _c_string(raw: bytes) -> str | None:
    """The text of a NUL-terminated printable C string; None if it is not one (bpftool's rule)."""
    end = raw.find(b"\0")
    if end < 0 or any(c <= 0x1F or c >= 0x7F for c in raw[:end]):
        return None
    return raw[:end].decode("ascii")
