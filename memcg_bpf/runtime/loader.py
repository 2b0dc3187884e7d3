"""Load a policy (register its memcg_ops, pin it) and unload it, leaving nothing behind on failure."""

from __future__ import annotations

import ctypes
import errno
import os
import time
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcg_bpf.bpf import btf as B
from memcg_bpf.runtime import knobs as K
from memcg_bpf.runtime import store
from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.bpf.libbpf import Libbpf, LibbpfError, Map, Object
from memcg_bpf.runtime.preflight import VMLINUX_BTF, require_all, require_bpffs
from memcg_bpf.bpf.struct_ops import kernel_value

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
    """Who holds memcg_ops: one of our policies, or something else (with its link id)."""
    for name in store.names():
        return (f"memcg_ops is already registered by policy {name!r}: replace it with "
                f"'memcg-bpf load POLICY --replace {name}', or run 'memcg-bpf unload {name}' first")
    vmlinux = B.Btf(VMLINUX_BTF.read_bytes())
    value_type = vmlinux.find(f"bpf_struct_ops_{STRUCT_OPS_TYPE}", B.STRUCT)
    ours = {info.id for info in sys.map_infos()
            if value_type and info.btf_vmlinux_value_type_id == value_type.id}
    for link in sys.link_infos():
        if link.struct_ops_map_id in ours:
            return (f"memcg_ops is already registered by a program memcg-bpf did not load "
                    f"(link id {link.id}, struct_ops map id {link.struct_ops_map_id}): "
                    f"unregister it first, e.g. 'bpftool link detach id {link.id}'")
    return "memcg_ops is already registered by a program memcg-bpf did not load: unregister it first"


def register_error(exc: LibbpfError, bpf: Libbpf, sys: Sys) -> MemcgBpfError:
    """The user-facing error for a refused registration or replacement."""
    if exc.errno == errno.EEXIST:
        return MemcgBpfError(holder_message(bpf, sys))
    if exc.errno == errno.EPERM:
        return MemcgBpfError("the kernel refused to register memcg_ops: it needs CAP_SYS_ADMIN in the "
                             "initial user namespace (a BPF token is not enough); run memcg-bpf as root on the host")
    return MemcgBpfError(exc.message)


def open_policy(obj: Object, btf: B.Btf, obj_path: Path) -> Map:
    """The object's one memcg_ops map (btf: the object's), which must be a link map."""
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
    return ops


def load(bpf: Libbpf, obj_path: Path, name: str, sets: tuple[str, ...], *,
         source: str = "", ranges: dict[str, tuple[int, int]] | None = None,
         replace: str | None = None) -> Loaded:
    """Load and register a policy; with replace, take over the link of that loaded policy.

    All or nothing: everything is pinned under a staging directory that
    becomes NAME in one rename, under the load/unload lock (see store).
    """
    # Everything that can be checked without the kernel first, so bad input
    # gets its own message on any machine.
    directory = store.policy_dir(name)
    old_directory = store.policy_dir(replace) if replace else None
    check_bpf_object(obj_path)
    sys = Sys(bpf)
    with Object(bpf, obj_path) as obj:
        btf = B.Btf(obj.raw_btf())
        ops = open_policy(obj, btf, obj_path)
        knob_values = apply_knobs(obj, btf, sets, ranges or {})
        require_all()
        with store.locked():
            store.collect_garbage()
            if old_directory is not None:
                store.require_loaded(replace or "")
            if directory.exists() and directory != old_directory:
                raise UsageError(f"a policy named {name!r} is already loaded: unload it or pass --name")
            try:
                obj.load()
            except LibbpfError as exc:
                raise MemcgBpfError(f"the kernel rejected {obj_path}: {exc.message}",
                                    details=verifier_tail(exc.log)) from exc
            prog_ids = {}
            for prog in obj.programs():
                if prog.fd >= 0:
                    prog_ids[prog.name] = sys.prog_info(prog.fd).id
            meta = {
                "name": name,
                "object": str(obj_path.resolve()),
                "source": source,
                "knobs": knob_values,
                "loaded_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                "loaded_at_unix": time.time(),
                "struct_ops_map": ops.name,
                "prog_ids": prog_ids,
                "struct_ops_map_id": sys.map_info(ops.fd).id,
            }
            staged = store.staging_dir(name)
            try:
                pin_objects(sys, obj, staged, meta)
                if old_directory is not None:
                    replace_link(bpf, sys, obj, btf, ops, old_directory, staged)
                else:
                    register(bpf, sys, ops, staged)
                store.crash_point("load:link-pinned")
                staged.rename(directory)
                store.crash_point("load:renamed")
            except BaseException:
                store.remove(staged)
                raise
    return Loaded(name, directory, meta)


def pin_objects(sys: Sys, obj: Object, directory: Path, meta: dict[str, Any]) -> None:
    """Pin every map and the metadata under directory (which must not exist)."""
    (directory / "maps").mkdir(parents=True)
    for m in obj.maps():
        # bpffs refuses names with dots (".bss" -> "telemetr_bss").
        m.pin(str(directory / "maps" / m.name.replace(".", "_")))
    store.crash_point("load:maps-pinned")
    store.write_meta(sys, directory, meta)
    store.crash_point("load:meta-pinned")


def register(bpf: Libbpf, sys: Sys, ops: Map, staged: Path) -> None:
    """Register ops through a new link and pin the link; the last step before the rename."""
    try:
        link = ops.attach_struct_ops()
    except LibbpfError as exc:
        raise register_error(exc, bpf, sys) from exc
    store.crash_point("load:registered")
    try:
        link.pin(str(staged / "link"))
    except BaseException:
        link.destroy()      # detaches: unregistered again
        raise
    link.disconnect()       # the pin keeps it registered
    link.destroy()


def replace_link(bpf: Libbpf, sys: Sys, obj: Object, btf: B.Btf, ops: Map, old: Path, staged: Path) -> None:
    """Make the old policy's link run ops (no moment without a policy), pinned under staged too."""
    sys.update(ops.fd, b"\0\0\0\0", kernel_value(obj, btf, ops))
    link_fd = sys.obj_get(str(old / "link"))
    try:
        old_map_fd = sys.map_fd_by_id(sys.link_info(link_fd).struct_ops_map_id)
        try:
            sys.obj_pin(link_fd, str(staged / "link"))
            try:
                sys.link_update(link_fd, ops.fd)
            except LibbpfError as exc:
                raise register_error(exc, bpf, sys) from exc
            try:
                # The link is pinned twice now; dropping the old pins leaves it registered.
                store.remove(store.unpublish(old))
            except BaseException:
                sys.link_update(link_fd, old_map_fd)   # back to the old policy
                raise
        finally:
            os.close(old_map_fd)
    finally:
        os.close(link_fd)


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


def unload(name: str) -> list[store.Entry]:
    """Unregister a policy and unpin it; also removes what an interrupted load or unload of it left.

    Returns the entries removed; raises if there was none.
    """
    store.check_name(name)
    require_bpffs()
    with store.locked():
        found = [e for e in store.entries() if e.name == name]
        if not found:
            store.require_loaded(name)   # raises with the list of loaded policies
        for entry in found:
            store.discard(entry)
    return found


def unload_all() -> list[store.Entry]:
    require_bpffs()
    with store.locked():
        found = store.entries()
        for entry in found:
            store.discard(entry)
    return found
