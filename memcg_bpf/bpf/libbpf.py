"""libbpf through ctypes: only the calls memcg-bpf uses, with types declared.

memcg_bpf.locate finds the library (Debian 12's libbpf 1.1 predates
struct_ops links). Every failure raises LibbpfError with the errno, a
one-line message and what libbpf logged meanwhile (for a verifier
rejection: the whole verifier log).

libbpf has one print callback per process. This module installs one
handler, once, for every library it loads, and keeps what libbpf prints in
one process-wide list; Libbpf objects only mark where their capture starts,
so they can come and go without cutting each other's logs.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.maptypes import MapType

MIN_VERSION = (1, 2)

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_libc = ctypes.CDLL(None, use_errno=True)
# vasprintf: libbpf prints a whole verifier log as one message; no fixed buffer cuts it.
_libc.vasprintf.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_void_p]
_libc.vasprintf.restype = ctypes.c_int
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


def _print(level: int, fmt: bytes, args: int) -> int:
    out = ctypes.c_void_p()
    if _libc.vasprintf(ctypes.byref(out), fmt, args) < 0 or not out.value:
        return 0
    try:
        _LOG.append(ctypes.string_at(out.value).decode(errors="replace"))
    finally:
        _libc.free(out.value)
    return 0


# Process-wide by nature (libbpf_set_print): the handler lives as long as the process.
_LOG: list[str] = []
_PRINTER = _PRINT_FN(_print)
_LIBS: dict[str, ctypes.CDLL] = {}


class LibbpfError(MemcgBpfError):
    """A libbpf call failed: errno, message, and libbpf's log."""

    def __init__(self, message: str, err: int, log: str = "") -> None:
        name = errno_mod.errorcode.get(err, str(err))
        super().__init__(f"{message}: {os.strerror(err)} ({name})", details=log)
        self.errno = err
        self.log = log


def _declare(lib: ctypes.CDLL) -> None:
    P, I, U, S, C = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_char_p
    sigs: dict[str, tuple[list[object], object]] = {
        "libbpf_major_version": ([], U),
        "libbpf_minor_version": ([], U),
        "libbpf_set_print": ([_PRINT_FN], P),
        "bpf_object__open_file": ([C, P], P),
        "bpf_object__load": ([P], I),
        "bpf_object__close": ([P], None),
        "bpf_object__next_map": ([P, P], P),
        "bpf_object__next_program": ([P, P], P),
        "bpf_map__name": ([P], C),
        "bpf_map__type": ([P], I),
        "bpf_map__fd": ([P], I),
        "bpf_map__key_size": ([P], U),
        "bpf_map__value_size": ([P], U),
        "bpf_map__lookup_elem": ([P, P, S, P, S, ctypes.c_uint64], I),
        "bpf_map__update_elem": ([P, P, S, P, S, ctypes.c_uint64], I),
        "bpf_map__get_next_key": ([P, P, P, S], I),
        "bpf_map__attach_struct_ops": ([P], P),
        "bpf_program__name": ([P], C),
        "bpf_program__attach": ([P], P),
        "bpf_program__set_autoload": ([P, ctypes.c_bool], I),
        "bpf_program__fd": ([P], I),
        "bpf_link__destroy": ([P], I),
        "bpf_link__disconnect": ([P], None),
        "bpf_link__fd": ([P], I),
        "bpf_link__pin": ([P, C], I),
        "bpf_link__update_map": ([P, P], I),
        "bpf_object__btf": ([P], P),
        "btf__raw_data": ([P, ctypes.POINTER(U)], P),
        "bpf_map__initial_value": ([P, ctypes.POINTER(S)], P),
        "bpf_map__btf_value_type_id": ([P], U),
        "bpf_map__map_flags": ([P], U),
        "bpf_map__pin": ([P, C], I),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res


class Libbpf:
    """A loaded libbpf.so with argument and result types declared."""

    def __init__(self, path: str | Path) -> None:
        key = os.path.realpath(path)
        if key not in _LIBS:
            try:
                lib = ctypes.CDLL(str(path), use_errno=True)
            except OSError as exc:
                raise MemcgBpfError(f"cannot load libbpf from {path}: {exc}; "
                                    "run 'memcg-bpf libbpf build' or set MEMCG_BPF_LIBBPF") from exc
            if not hasattr(lib, "libbpf_major_version"):
                raise MemcgBpfError(f"{path} is not libbpf >= 0.6, memcg-bpf needs >= 1.2: "
                                    "run 'memcg-bpf libbpf build' or set MEMCG_BPF_LIBBPF")
            lib.libbpf_major_version.restype = lib.libbpf_minor_version.restype = ctypes.c_uint32
            version = (lib.libbpf_major_version(), lib.libbpf_minor_version())
            if version < MIN_VERSION:
                raise MemcgBpfError(f"{path} is libbpf {version[0]}.{version[1]}, memcg-bpf needs >= 1.2: "
                                    "run 'memcg-bpf libbpf build' or set MEMCG_BPF_LIBBPF")
            _declare(lib)
            lib.libbpf_set_print(_PRINTER)
            _LIBS[key] = lib
        self.lib = _LIBS[key]
        self.path = str(path)
        self.version = (self.lib.libbpf_major_version(), self.lib.libbpf_minor_version())

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect what libbpf logs inside the block."""
        start = len(_LOG)
        captured: list[str] = []
        try:
            yield captured
        finally:
            captured.extend(_LOG[start:])
            del _LOG[start:]

    def take_log(self) -> str:
        text = "".join(_LOG)
        _LOG.clear()
        return text




def _err(ret: int) -> int:
    return -ret if ret < 0 else (ctypes.get_errno() or errno_mod.EINVAL)


class Link:
    def __init__(self, bpf: Libbpf, ptr: int) -> None:
        self.bpf = bpf
        self.ptr: int | None = ptr

    @property
    def fd(self) -> int:
        return self.bpf.lib.bpf_link__fd(self.ptr)

    def pin(self, path: str) -> None:
        ret = self.bpf.lib.bpf_link__pin(self.ptr, path.encode())
        if ret:
            raise LibbpfError(f"cannot pin link at {path}", _err(ret), self.bpf.take_log())

    def update_map(self, new: "Map") -> None:
        """Make the struct_ops link run the programs of another (loaded) map (BPF_LINK_UPDATE)."""
        with self.bpf.capture() as log:
            ret = self.bpf.lib.bpf_link__update_map(self.ptr, new.ptr)
        if ret:
            raise LibbpfError(f"cannot update link to struct_ops map {new.name}", _err(ret), "".join(log))

    def disconnect(self) -> None:
        """Let destroy() free the link without detaching it (it lives on through a pin)."""
        self.bpf.lib.bpf_link__disconnect(self.ptr)

    def destroy(self) -> None:
        if self.ptr:
            self.bpf.lib.bpf_link__destroy(self.ptr)
            self.ptr = None


class Map:
    def __init__(self, bpf: Libbpf, ptr: int) -> None:
        self.bpf = bpf
        self.ptr = ptr

    @property
    def name(self) -> str:
        return self.bpf.lib.bpf_map__name(self.ptr).decode()

    @property
    def type(self) -> int:
        return self.bpf.lib.bpf_map__type(self.ptr)

    @property
    def fd(self) -> int:
        return self.bpf.lib.bpf_map__fd(self.ptr)

    @property
    def key_size(self) -> int:
        return self.bpf.lib.bpf_map__key_size(self.ptr)

    @property
    def value_size(self) -> int:
        return self.bpf.lib.bpf_map__value_size(self.ptr)

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        ret = self.bpf.lib.bpf_map__lookup_elem(self.ptr, key, len(key), value, len(value), 0)
        if ret == -errno_mod.ENOENT:
            return None
        if ret:
            raise LibbpfError(f"lookup in map {self.name} failed", _err(ret), self.bpf.take_log())
        return value.raw

    def update(self, key: bytes, value: bytes) -> None:
        ret = self.bpf.lib.bpf_map__update_elem(self.ptr, key, len(key), value, len(value), 0)
        if ret:
            raise LibbpfError(f"update of map {self.name} failed", _err(ret), self.bpf.take_log())

    def keys(self) -> Iterator[bytes]:
        cur: bytes | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = self.bpf.lib.bpf_map__get_next_key(self.ptr, cur, nxt, self.key_size)
            if ret:
                return
            cur = nxt.raw
            yield cur

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    @property
    def flags(self) -> int:
        return self.bpf.lib.bpf_map__map_flags(self.ptr)

    @property
    def btf_value_type_id(self) -> int:
        return self.bpf.lib.bpf_map__btf_value_type_id(self.ptr)

    def initial_value(self) -> ctypes.Array[ctypes.c_char]:
        """The map's initial data (.rodata/.data/.bss), writable until load."""
        size = ctypes.c_size_t()
        ptr = self.bpf.lib.bpf_map__initial_value(self.ptr, ctypes.byref(size))
        if not ptr:
            raise MemcgBpfError(f"map {self.name} has no initial value")
        return (ctypes.c_char * size.value).from_address(ptr)

    def initial_value_address(self) -> int:
        """Where libbpf keeps the map's initial data; for a struct_ops map, the policy's struct."""
        ptr = self.bpf.lib.bpf_map__initial_value(self.ptr, None)
        if not ptr:
            raise MemcgBpfError(f"map {self.name} has no initial value")
        return int(ptr)

    def pin(self, path: str) -> None:
        ret = self.bpf.lib.bpf_map__pin(self.ptr, path.encode())
        if ret:
            raise LibbpfError(f"cannot pin map {self.name} at {path}", _err(ret), self.bpf.take_log())

    def attach_struct_ops(self) -> Link:
        """Register the struct_ops map: a link for .struct_ops.link maps, a map update otherwise."""
        with self.bpf.capture() as log:
            ptr = self.bpf.lib.bpf_map__attach_struct_ops(self.ptr)
            err = ctypes.get_errno()
        if not ptr:
            raise LibbpfError(f"cannot register struct_ops map {self.name}", err or errno_mod.EINVAL, "".join(log))
        return Link(self.bpf, ptr)


class Program:
    def __init__(self, bpf: Libbpf, ptr: int) -> None:
        self.bpf = bpf
        self.ptr = ptr

    @property
    def name(self) -> str:
        return self.bpf.lib.bpf_program__name(self.ptr).decode()

    @property
    def fd(self) -> int:
        return self.bpf.lib.bpf_program__fd(self.ptr)

    def set_autoload(self, autoload: bool) -> None:
        self.bpf.lib.bpf_program__set_autoload(self.ptr, autoload)

    def attach(self) -> Link:
        with self.bpf.capture() as log:
            ptr = self.bpf.lib.bpf_program__attach(self.ptr)
            err = ctypes.get_errno()
        if not ptr:
            raise LibbpfError(f"cannot attach program {self.name}", err or errno_mod.EINVAL, "".join(log))
        return Link(self.bpf, ptr)


class Object:
    """A BPF object file: open, optionally adjust, load, then use its maps and programs."""

    def __init__(self, bpf: Libbpf, path: str | Path) -> None:
        self.bpf = bpf
        self.path = str(path)
        with bpf.capture() as log:
            ptr = bpf.lib.bpf_object__open_file(self.path.encode(), None)
            err = ctypes.get_errno()
        if not ptr:
            raise LibbpfError(f"cannot open BPF object {self.path}", err or errno_mod.EINVAL, "".join(log))
        self.ptr: int | None = ptr

    def maps(self) -> list[Map]:
        out: list[Map] = []
        cur = None
        while True:
            cur = self.bpf.lib.bpf_object__next_map(self.ptr, cur)
            if not cur:
                return out
            out.append(Map(self.bpf, cur))

    def programs(self) -> list[Program]:
        out: list[Program] = []
        cur = None
        while True:
            cur = self.bpf.lib.bpf_object__next_program(self.ptr, cur)
            if not cur:
                return out
            out.append(Program(self.bpf, cur))

    def map(self, name: str) -> Map:
        for m in self.maps():
            if m.name == name:
                return m
        raise MemcgBpfError(f"{self.path} has no map named {name}")

    def program(self, name: str) -> Program:
        for p in self.programs():
            if p.name == name:
                return p
        raise MemcgBpfError(f"{self.path} has no program named {name}")

    def raw_btf(self) -> bytes:
        """The object's BTF, as raw bytes for memcg_bpf.btf.Btf."""
        btf = self.bpf.lib.bpf_object__btf(self.ptr)
        if not btf:
            raise MemcgBpfError(f"{self.path} has no BTF: compile it with clang -g")
        size = ctypes.c_uint32()
        data = self.bpf.lib.btf__raw_data(btf, ctypes.byref(size))
        return ctypes.string_at(data, size.value)

    def struct_ops_maps(self) -> list[Map]:
        return [m for m in self.maps() if m.type == MapType.STRUCT_OPS]

    def load(self) -> None:
        with self.bpf.capture() as log:
            ret = self.bpf.lib.bpf_object__load(self.ptr)
        if ret:
            raise LibbpfError(f"cannot load BPF object {self.path}", _err(ret), "".join(log))

    def close(self) -> None:
        if self.ptr:
            self.bpf.lib.bpf_object__close(self.ptr)
            self.ptr = None

    def __enter__(self) -> "Object":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
