"""Load a policy (register its memcg_ops, pin it) and unload it, leaving nothing behind on failure."""

from __future__ import annotations

import ctypes
import errno
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import btf as B
from . import knobs as K
from . import pins
from .bpfsys import Sys
from .errors import MemcgBpfError, UsageError
from .libbpf import Libbpf, LibbpfError, Object
from .preflight import VMLINUX_BTF, require_all

BPF_F_LINK = 1 << 13
EM_BPF = 247
STRUCT_OPS_TYPE = "memcg_ops"


@dataclass(frozen=True)
class Loaded:
    name: str
    directory: Path
    meta: dict[str, Any]


def check_bpf_object(path: Path) -> None:
    try:
        head = path.read_bytes()[:20]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != EM_BPF:
        raise UsageError(f"{path} is not a BPF object file: compile the policy with 'memcg-bpf build FILE.bpf.c'")


def verifier_tail(log: str, lines: int = 25) -> str:
    kept = [line for line in log.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def holder_message(bpf: Libbpf, sys: Sys) -> str:
    """Who holds memcg_ops: one of our policies, or something else (with its map id)."""
    for name in pins.names():
        return f"memcg_ops is already registered by policy {name!r}: run 'memcg-bpf unload {name}' first"
    data = VMLINUX_BTF.read_bytes()
    vmlinux = B.Btf(data)
    value_type = vmlinux.find("bpf_struct_ops_memcg_ops", B.STRUCT)
    for info in sys.map_infos():
        if value_type and info.btf_vmlinux_value_type_id == value_type.id:
            return (f"memcg_ops is already registered by a program memcg-bpf did not load "
                    f"(struct_ops map id {info.id}): unregister it first, "
                    f"e.g. 'bpftool struct_ops unregister id {info.id}'")
    return "memcg_ops is already registered by a program memcg-bpf did not load: unregister it first"


def load(bpf: Libbpf, obj_path: Path, name: str, sets: tuple[str, ...], *,
         source: str = "", ranges: dict[str, tuple[int, int]] | None = None) -> Loaded:
    # Everything that can be checked without the kernel first, so bad input
    # gets its own message on any machine.
    directory = pins.policy_dir(name)
    check_bpf_object(obj_path)
    sys = Sys(bpf)
    with Object(bpf, obj_path) as obj:
        btf = B.Btf(obj.raw_btf())
        ours = [m for m in obj.struct_ops_maps() if btf.resolve(m.btf_value_type_id).name == STRUCT_OPS_TYPE]
        if not ours:
            raise UsageError(f"{obj_path} has no {STRUCT_OPS_TYPE} struct_ops map: "
                             f"declare one as SEC(\".struct_ops.link\") struct {STRUCT_OPS_TYPE} ...")
        if len(ours) > 1:
            raise UsageError(f"{obj_path} has {len(ours)} {STRUCT_OPS_TYPE} maps; a policy has exactly one")
        ops = ours[0]
        if not ops.flags & BPF_F_LINK:
            raise UsageError(f"map {ops.name} in {obj_path} is a legacy .struct_ops map: "
                             "declare it SEC(\".struct_ops.link\") so it can be pinned and unloaded")
        knob_values = apply_knobs(obj, btf, sets, ranges or {})
        require_all()
        if directory.exists():
            raise UsageError(f"a policy named {name!r} is already loaded: unload it or pass --name")
        try:
            obj.load()
        except LibbpfError as exc:
            raise MemcgBpfError(f"the kernel rejected {obj_path}: {exc.message}",
                                details=verifier_tail(exc.log)) from exc
        prog_ids = {}
        for prog in obj.programs():
            fd = bpf.lib.bpf_program__fd(prog.ptr)
            if fd >= 0:
                prog_ids[prog.name] = sys.prog_info(fd).id
        try:
            link = ops.attach_struct_ops()
        except LibbpfError as exc:
            if exc.errno == errno.EEXIST:
                raise MemcgBpfError(holder_message(bpf, sys)) from exc
            raise
        try:
            directory.mkdir(parents=True)
            link.pin(str(directory / "link"))
            (directory / "maps").mkdir()
            for m in obj.maps():
                # bpffs refuses names with dots (".bss" -> "telemetr_bss").
                m.pin(str(directory / "maps" / m.name.replace(".", "_")))
            meta = {
                "name": name,
                "object": str(obj_path.resolve()),
                "source": source,
                "knobs": knob_values,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "loaded_at_unix": time.time(),
                "struct_ops_map": ops.name,
                "prog_ids": prog_ids,
                "struct_ops_map_id": sys.map_info(ops.fd).id,
            }
            pins.write_meta(sys, directory, meta)
        except BaseException:
            pins.remove(directory)
            link.destroy()
            raise
    return Loaded(name, directory, meta)


def apply_knobs(obj: Object, btf: B.Btf, sets: tuple[str, ...],
                ranges: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Write --set values into .rodata before load; return every knob's final value."""
    rodata_map = next((m for m in obj.maps() if m.name.endswith(K.RODATA)), None)
    data = rodata_map.initial_value() if rodata_map else None
    knobs = K.knobs_of(btf, bytes(data) if data is not None else None)
    for spec in sets:
        knob_name, text = K.parse_assignment(spec)
        knob = knobs.get(knob_name)
        if knob is None:
            raise UsageError(f"unknown knob {knob_name!r}; {K.describe_knobs(knobs)}")
        encoded = K.encode(btf, knob, text, ranges.get(knob_name))
        assert data is not None
        ctypes.memmove(ctypes.addressof(data) + knob.offset, encoded, knob.size)
    if data is None:
        return {}
    raw = bytes(data)
    return {k.name: jsonable(btf.decode(k.type_id, raw, k.offset)) for k in knobs.values()}


def jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, B.CgroupId):
        return int(value)
    return value


def unload(name: str) -> None:
    directory = pins.require_loaded(name)
    pins.remove(directory)
