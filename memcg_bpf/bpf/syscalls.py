"""Low-level BPF syscalls through libbpf's bpf.h API: pins, ids, info, map access."""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import struct
from dataclasses import dataclass
from typing import Iterator

from memcg_bpf.bpf import cpus
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.libbpf import Libbpf, LibbpfError
from memcg_bpf.bpf.maptypes import MapType, ValueLayout, layout

BPF_LINK_TYPE_STRUCT_OPS = 9

_MAP_INFO = struct.Struct("<IIIIII16sIIQQIIIIQ")      # struct bpf_map_info, 88 bytes
_LINK_HEAD = struct.Struct("<III4xI")                  # type, id, prog_id, union: struct_ops.map_id
_PROG_RUN_OFF = 192                                     # run_time_ns, run_cnt, recursion_misses
_PROG_INFO_SIZE = 232


class NotAMap(MemcgBpfError):
    """A pin expected to be a map is another kind of BPF object."""


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int


@dataclass(frozen=True)
class ProgInfo:
    type: int
    id: int
    name: str
    run_time_ns: int
    run_cnt: int
    recursion_misses: int


@dataclass(frozen=True)
class LinkInfo:
    type: int
    id: int
    prog_id: int
    struct_ops_map_id: int


class Sys:
    """Typed wrappers; every failure raises LibbpfError with errno."""

    def __init__(self, bpf: Libbpf) -> None:
        self.bpf = bpf
        self._possible_cpus = 0
        lib = bpf.lib
        P, I, U, C = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
        for name, args, res in [
            ("bpf_obj_get", [C], I),
            ("bpf_obj_pin", [I, C], I),
            ("bpf_obj_get_info_by_fd", [I, P, ctypes.POINTER(U)], I),
            ("bpf_prog_get_fd_by_id", [U], I),
            ("bpf_map_get_fd_by_id", [U], I),
            ("bpf_map_get_next_id", [U, ctypes.POINTER(U)], I),
            ("bpf_prog_get_next_id", [U, ctypes.POINTER(U)], I),
            ("bpf_link_get_next_id", [U, ctypes.POINTER(U)], I),
            ("bpf_link_get_fd_by_id", [U], I),
            ("bpf_link_update", [I, I, P], I),
            ("bpf_map_lookup_elem", [I, P, P], I),
            ("bpf_map_update_elem", [I, P, P, ctypes.c_uint64], I),
            ("bpf_map_get_next_key", [I, P, P], I),
            ("bpf_map_create", [I, C, U, U, U, P], I),
            ("btf__load_from_kernel_by_id", [U], P),
            ("btf__raw_data", [P, ctypes.POINTER(U)], P),
            ("btf__free", [P], None),
        ]:
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = res
        self.lib = lib

    def _check(self, ret: int, what: str) -> int:
        if ret < 0:
            raise LibbpfError(what, -ret if ret != -1 else (ctypes.get_errno() or errno_mod.EINVAL))
        return ret

    def obj_get(self, path: str) -> int:
        return self._check(self.lib.bpf_obj_get(path.encode()), f"cannot open pinned object {path}")

    def open_map(self, path: str) -> tuple[int, MapInfo]:
        """An fd of the map pinned at path and its info; NotAMap if the pin is a program or link."""
        fd = self.obj_get(path)
        try:
            kind = os.readlink(f"/proc/self/fd/{fd}")
            if kind != "anon_inode:bpf-map":
                raise NotAMap(f"{path} is not a BPF map (it is {kind.removeprefix('anon_inode:')})")
            return fd, self.map_info(fd)
        except BaseException:
            os.close(fd)
            raise

    def obj_pin(self, fd: int, path: str) -> None:
        self._check(self.lib.bpf_obj_pin(fd, path.encode()), f"cannot pin at {path}")

    def _info(self, fd: int, size: int) -> bytes:
        buf = ctypes.create_string_buffer(size)
        length = ctypes.c_uint32(size)
        self._check(self.lib.bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(length)), "cannot read object info")
        return buf.raw

    def map_info(self, fd: int) -> MapInfo:
        (mtype, mid, key_size, value_size, max_entries, _flags, name, _ifindex, vmlinux_value_type_id,
         _dev, _ino, btf_id, key_type_id, value_type_id, _vmlinux_id, _extra) = _MAP_INFO.unpack(
            self._info(fd, _MAP_INFO.size))
        return MapInfo(mtype, mid, key_size, value_size, max_entries, name.split(b"\0")[0].decode(),
                       btf_id, key_type_id, value_type_id, vmlinux_value_type_id)

    def prog_info(self, fd: int) -> ProgInfo:
        raw = self._info(fd, _PROG_INFO_SIZE)
        ptype, pid = struct.unpack_from("<II", raw, 0)
        name = raw[64:80].split(b"\0")[0].decode()
        run_time, run_cnt, misses = struct.unpack_from("<QQQ", raw, _PROG_RUN_OFF)
        return ProgInfo(ptype, pid, name, run_time, run_cnt, misses)

    def link_info(self, fd: int) -> LinkInfo:
        ltype, lid, prog_id, map_id = _LINK_HEAD.unpack_from(self._info(fd, 64))
        return LinkInfo(ltype, lid, prog_id, map_id if ltype == BPF_LINK_TYPE_STRUCT_OPS else 0)

    def prog_fd_by_id(self, prog_id: int) -> int:
        return self._check(self.lib.bpf_prog_get_fd_by_id(prog_id), f"no BPF program with id {prog_id}")

    def map_fd_by_id(self, map_id: int) -> int:
        return self._check(self.lib.bpf_map_get_fd_by_id(map_id), f"no BPF map with id {map_id}")

    def _ids(self, fn: object) -> Iterator[int]:
        cur = ctypes.c_uint32(0)
        nxt = ctypes.c_uint32(0)
        while fn(cur.value, ctypes.byref(nxt)) == 0:  # type: ignore[operator]
            yield nxt.value
            cur.value = nxt.value

    def map_ids(self) -> Iterator[int]:
        return self._ids(self.lib.bpf_map_get_next_id)

    def map_infos(self) -> Iterator[MapInfo]:
        """Every map in the kernel (those that vanish meanwhile are skipped)."""
        for map_id in self.map_ids():
            try:
                fd = self.map_fd_by_id(map_id)
            except LibbpfError:
                continue
            try:
                yield self.map_info(fd)
            finally:
                os.close(fd)

    def prog_ids(self) -> Iterator[int]:
        return self._ids(self.lib.bpf_prog_get_next_id)

    def link_infos(self) -> Iterator[LinkInfo]:
        """Every BPF link in the kernel (those that vanish meanwhile are skipped)."""
        for link_id in self._ids(self.lib.bpf_link_get_next_id):
            fd = self.lib.bpf_link_get_fd_by_id(link_id)
            if fd < 0:
                continue
            try:
                yield self.link_info(fd)
            finally:
                os.close(fd)

    def link_update(self, link_fd: int, map_fd: int) -> None:
        """BPF_LINK_UPDATE of a struct_ops link: it runs the (registered-ready) map map_fd from now on."""
        self._check(self.lib.bpf_link_update(link_fd, map_fd, None), "cannot update the link")

    @property
    def possible_cpus(self) -> int:
        if not self._possible_cpus:
            self._possible_cpus = cpus.possible()
        return self._possible_cpus

    def value_layout(self, info: MapInfo) -> ValueLayout:
        """How a lookup in this map lays out its bytes; UnreadableMap for a type that cannot be sized."""
        return layout(info.type, info.value_size, self.possible_cpus, info.name)

    def lookup(self, fd: int, key: bytes, info: MapInfo) -> bytes | None:
        """The raw value for key (for a per-CPU map every possible CPU's, 8-byte aligned), None if absent."""
        value = ctypes.create_string_buffer(self.value_layout(info).buffer_size)
        ret = self.lib.bpf_map_lookup_elem(fd, key, value)
        if ret < 0:
            if -ret == errno_mod.ENOENT or ctypes.get_errno() == errno_mod.ENOENT:
                return None
            self._check(ret, "map lookup failed")
        return value.raw

    def update(self, fd: int, key: bytes, value: bytes) -> None:
        self._check(self.lib.bpf_map_update_elem(fd, key, value, 0), "map update failed")

    def keys(self, fd: int, key_size: int) -> Iterator[bytes]:
        cur: bytes | None = None
        nxt = ctypes.create_string_buffer(key_size)
        while self.lib.bpf_map_get_next_key(fd, cur, nxt) == 0:
            cur = nxt.raw
            yield cur

    def create_array(self, name: str, value_size: int) -> int:
        return self._check(self.lib.bpf_map_create(MapType.ARRAY, name.encode(), 4, value_size, 1, None),
                           f"cannot create map {name}")

    def kernel_btf(self, btf_id: int) -> bytes:
        """The raw BTF the kernel holds under btf_id (a program's own BTF)."""
        btf = self.lib.btf__load_from_kernel_by_id(btf_id)
        if not btf:
            raise LibbpfError(f"cannot load BTF id {btf_id}", ctypes.get_errno() or errno_mod.ENOENT)
        try:
            size = ctypes.c_uint32()
            data = self.lib.btf__raw_data(btf, ctypes.byref(size))
            return ctypes.string_at(data, size.value)
        finally:
            self.lib.btf__free(btf)
