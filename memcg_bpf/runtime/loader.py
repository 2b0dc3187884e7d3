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
from memcg_bpf.runtime import attach
from memcg_bpf.runtime import knobs as K
from memcg_bpf.runtime import store
from memcg_bpf.runtime.cgroups import CgroupNames
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


def loaded_metas(sys: Sys) -> dict[str, dict[str, Any]]:
    """The metadata of our loaded policies, by name (unreadable ones left out)."""
    out = {}
    for name in store.names():
        try:
            out[name] = store.read_meta(sys, store.policy_dir(name))
        except (MemcgBpfError, OSError):
            continue
    return out


def attached_policies(sys: Sys) -> list[tuple[str, attach.Target]]:
    """Our loaded policies and where each is attached (metadata without a cgroup: the root)."""
    return [(name, target_of(meta)) for name, meta in loaded_metas(sys).items()]


def target_of(meta: dict[str, Any]) -> attach.Target:
    return attach.Target(meta.get("cgroup", "/"), meta.get("cgroup_id", 0), meta.get("allow_override", False))


def where(target: attach.Target) -> str:
    return "the root cgroup" if target.is_root else f"cgroup {target.path}"


def holder_message(bpf: Libbpf, sys: Sys, target: attach.Target) -> str:
    """Who holds the cgroup: one of our policies, or something else (with its link id)."""
    for name, other in attached_policies(sys):
        if other.cgroup_id == target.cgroup_id:
            return (f"{where(target)} already has policy {name!r} attached: replace it with "
                    f"'memcg-bpf load POLICY --replace {name}', or run 'memcg-bpf unload {name}' first")
    for link_id, map_id in foreign_links(sys, target):
        return (f"{where(target)} already has a policy memcg-bpf did not load "
                f"(link id {link_id}, struct_ops map id {map_id}): "
                f"unregister it first, e.g. 'bpftool link detach id {link_id}'")
    return f"{where(target)} already has a policy memcg-bpf did not load: unregister it first"


def foreign_links(sys: Sys, target: attach.Target) -> list[tuple[int, int]]:
    """(link id, map id) of memcg_ops links memcg-bpf did not make, attached at target (or unknown where)."""
    vmlinux = B.Btf(VMLINUX_BTF.read_bytes())
    value_type = vmlinux.find(f"bpf_struct_ops_{STRUCT_OPS_TYPE}", B.STRUCT)
    ops_type = vmlinux.find(STRUCT_OPS_TYPE, B.STRUCT)
    if value_type is None or ops_type is None:
        return []
    data = next(m for m in value_type.members if m.name == "data").bit_offset // 8
    cgid = next((m for m in ops_type.members if m.name == "cgroup_id"), None)
    ours = {meta.get("struct_ops_map_id") for meta in loaded_metas(sys).values()}
    maps = {info.id: info for info in sys.map_infos() if info.btf_vmlinux_value_type_id == value_type.id}
    found = []
    for link in sys.link_infos():
        info = maps.get(link.struct_ops_map_id)
        if info is None or info.id in ours:
            continue
        attached_id = None
        if cgid is not None:
            try:
                fd = sys.map_fd_by_id(info.id)
                try:
                    raw = sys.lookup(fd, b"\0\0\0\0", info) or b""
                finally:
                    os.close(fd)
                at = data + cgid.bit_offset // 8
                attached_id = int.from_bytes(raw[at:at + 8], "little")
            except (MemcgBpfError, OSError):
                pass
        if attached_id is None or attached_id == target.cgroup_id:
            found.append((link.id, info.id))
    return found


def is_below(path: str, ancestor: str) -> bool:
    """Is cgroup path strictly below ancestor ('/a/b' below '/a' and '/')?"""
    if ancestor == "/":
        return path != "/"
    return path.startswith(ancestor.rstrip("/") + "/")


def register_error(exc: LibbpfError, bpf: Libbpf, sys: Sys, target: attach.Target) -> MemcgBpfError:
    """The user-facing error for a refused registration or replacement."""
    if exc.errno == errno.EEXIST:
        return MemcgBpfError(holder_message(bpf, sys, target))
    if exc.errno == errno.EPERM:
        for name, other in attached_policies(sys):
            if is_below(target.path, other.path) and not other.allow_override:
                return MemcgBpfError(
                    f"policy {name!r} on {where(other)} does not allow policies below it: reload it with "
                    f"'--allow-override' (memcg-bpf load ... --replace {name} --allow-override) first")
        return MemcgBpfError("the kernel refused to register memcg_ops: it needs CAP_SYS_ADMIN in the "
                             "initial user namespace (a BPF token is not enough); run memcg-bpf as root on the host")
    if exc.errno == errno.EBUSY:
        below = [f"{name!r} on {other.path}" for name, other in attached_policies(sys)
                 if is_below(other.path, target.path)]
        held = f" ({', '.join(below)})" if below else ""
        return MemcgBpfError(f"{where(target)} has policies attached below it{held}: pass --allow-override to let "
                             "them keep governing their subtrees, or unload them first")
    if exc.errno == errno.ENOENT and not target.is_root:
        return MemcgBpfError(f"cgroup {target.path} is gone or has no memory controller: "
                             "create it and enable +memory in its parent's cgroup.subtree_control")
    if exc.errno == errno.EXDEV:
        return MemcgBpfError("a replacement must attach to the same cgroup as the policy it replaces")
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
         replace: str | None = None, target: attach.Target | None = None,
         extra_meta: dict[str, Any] | None = None) -> Loaded:
    """Load and register a policy; with replace, take over the link of that loaded policy.

    target: where to attach; None keeps what the object says (the root, unless
    its struct memcg_ops sets cgroup_id), or with replace the replaced policy's.
    extra_meta: more metadata to keep with the pins (apply's declaration digest).

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
                target = replacement_target(sys, old_directory, replace or "", target)
            if target is not None:
                attach.write(btf, ops, target)
            else:
                target = object_target(btf, ops)
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
                "cgroup": target.path,
                "cgroup_id": target.cgroup_id,
                "allow_override": target.allow_override,
                "prog_ids": prog_ids,
                "struct_ops_map_id": sys.map_info(ops.fd).id,
                **(extra_meta or {}),
            }
            staged = store.staging_dir(name)
            try:
                pin_objects(sys, obj, staged, meta)
                if old_directory is not None:
                    replace_link(bpf, sys, obj, btf, ops, old_directory, staged, target)
                else:
                    register(bpf, sys, ops, staged, target)
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


def replacement_target(sys: Sys, old: Path, replace: str, wanted: attach.Target | None) -> attach.Target:
    """A replacement attaches where the replaced policy is; --allow-override may change."""
    current = target_of(store.read_meta(sys, old))
    if wanted is None:
        return current
    if wanted.path != "/" and wanted.cgroup_id != current.cgroup_id:
        raise UsageError(f"--replace {replace} keeps {where(current)}, where {replace} is attached; "
                         f"to attach to cgroup {wanted.path}, load it without --replace")
    return attach.Target(current.path, current.cgroup_id, wanted.allow_override)


def object_target(btf: B.Btf, ops: Map) -> attach.Target:
    """Where the object's own data attaches it (its cgroup_id, 0 unless the source set one)."""
    cgroup_id, flags = attach.read(btf, ops)
    path = "/" if cgroup_id == 0 else CgroupNames().path(cgroup_id) or f"(cgroup id {cgroup_id})"
    return attach.Target(path, cgroup_id, bool(flags & attach.ALLOW_OVERRIDE))


def register(bpf: Libbpf, sys: Sys, ops: Map, staged: Path, target: attach.Target) -> None:
    """Register ops through a new link and pin the link; the last step before the rename."""
    try:
        link = ops.attach_struct_ops()
    except LibbpfError as exc:
        raise register_error(exc, bpf, sys, target) from exc
    store.crash_point("load:registered")
    try:
        link.pin(str(staged / "link"))
    except BaseException:
        link.destroy()      # detaches: unregistered again
        raise
    link.disconnect()       # the pin keeps it registered
    link.destroy()


def replace_link(bpf: Libbpf, sys: Sys, obj: Object, btf: B.Btf, ops: Map, old: Path, staged: Path,
                 target: attach.Target) -> None:
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
                raise register_error(exc, bpf, sys, target) from exc
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


def check_policy(bpf: Libbpf, obj_path: Path, sets: tuple[str, ...],
                 ranges: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """Everything load checks before the kernel: the object, its memcg_ops map, the knobs; the knob values."""
    check_bpf_object(obj_path)
    with Object(bpf, obj_path) as obj:
        btf = B.Btf(obj.raw_btf())
        open_policy(obj, btf, obj_path)
        return apply_knobs(obj, btf, sets, ranges or {})


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
