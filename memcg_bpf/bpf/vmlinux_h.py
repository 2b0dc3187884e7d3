"""vmlinux.h from BTF through libbpf's btf_dump API (no bpftool needed)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.libbpf import Libbpf, _libc

_DUMP_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)

HEADER = """#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

"""
FOOTER = """
#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""


def _declare(lib: ctypes.CDLL) -> None:
    lib.btf__parse.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.btf__parse.restype = ctypes.c_void_p
    lib.btf__free.argtypes = [ctypes.c_void_p]
    lib.btf__raw_data.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    lib.btf__raw_data.restype = ctypes.c_void_p


def raw_btf(bpf: Libbpf, btf_path: Path) -> bytes:
    """The raw BTF of a vmlinux ELF file or of /sys/kernel/btf/vmlinux."""
    lib = bpf.lib
    _declare(lib)
    btf = lib.btf__parse(str(btf_path).encode(), None)
    if not btf:
        raise MemcgBpfError(f"{btf_path} has no BTF: pass a vmlinux built with CONFIG_DEBUG_INFO_BTF "
                            "or /sys/kernel/btf/vmlinux")
    try:
        size = ctypes.c_uint32()
        data = lib.btf__raw_data(btf, ctypes.byref(size))
        return ctypes.string_at(data, size.value)
    finally:
        lib.btf__free(btf)


def dump_c(bpf: Libbpf, btf_path: Path) -> str:
    """All types of the BTF in btf_path (an ELF with .BTF, or raw BTF) as C."""
    lib = bpf.lib
    _declare(lib)
    lib.btf__type_cnt.argtypes = [ctypes.c_void_p]
    lib.btf__type_cnt.restype = ctypes.c_uint32
    lib.btf_dump__new.argtypes = [ctypes.c_void_p, _DUMP_FN, ctypes.c_void_p, ctypes.c_void_p]
    lib.btf_dump__new.restype = ctypes.c_void_p
    lib.btf_dump__dump_type.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.btf_dump__dump_type.restype = ctypes.c_int
    lib.btf_dump__free.argtypes = [ctypes.c_void_p]

    btf = lib.btf__parse(str(btf_path).encode(), None)
    if not btf:
        raise MemcgBpfError(f"{btf_path} has no BTF: pass a vmlinux built with CONFIG_DEBUG_INFO_BTF "
                            "or /sys/kernel/btf/vmlinux")
    chunks: list[str] = []
    buf = ctypes.create_string_buffer(1 << 16)
    # Without argtypes ctypes passes the va_list pointer as a 32-bit int.
    _libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    _libc.vsnprintf.restype = ctypes.c_int

    def printer(_ctx: int, fmt: bytes, args: int) -> None:
        n = _libc.vsnprintf(buf, len(buf), fmt, args)
        if n >= len(buf):
            raise MemcgBpfError("a BTF type is too long to print")
        chunks.append(buf.value.decode(errors="replace"))

    callback = _DUMP_FN(printer)
    dump = lib.btf_dump__new(btf, callback, None, None)
    try:
        if not dump:
            raise MemcgBpfError(f"libbpf cannot dump the BTF of {btf_path}")
        for type_id in range(1, lib.btf__type_cnt(btf)):
            err = lib.btf_dump__dump_type(dump, type_id)
            if err:
                raise MemcgBpfError(f"libbpf failed to dump BTF type {type_id} of {btf_path} ({err})")
    finally:
        if dump:
            lib.btf_dump__free(dump)
        lib.btf__free(btf)
    return HEADER + "".join(chunks) + FOOTER
