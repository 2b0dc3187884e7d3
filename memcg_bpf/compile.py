"""Compile BPF C against a vmlinux.h made from a kernel's BTF, cached by content."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .btfdump import dump_c
from .errors import MemcgBpfError, UsageError
from .libbpf import Libbpf
from .toolchain import find_clang

RUNNING_BTF = Path("/sys/kernel/btf/vmlinux")


@dataclass(frozen=True)
class Toolchain:
    clang: str
    libbpf_include: Path  # holds bpf/bpf_helpers.h etc.


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def vmlinux_h(bpf: Libbpf, btf: Path, cache: Path) -> Path:
    """Generate (once per BTF content) and return the directory holding vmlinux.h."""
    if not btf.exists():
        raise UsageError(f"{btf} does not exist: pass --btf FILE (e.g. the built vmlinux)")
    stat = btf.stat()
    key = _digest(str(btf.resolve()).encode(), str(stat.st_size).encode(), str(int(stat.st_mtime)).encode())
    directory = cache / "vmlinux-h" / key
    header = directory / "vmlinux.h"
    if not header.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = header.with_suffix(".tmp")
        tmp.write_text(dump_c(bpf, btf))
        tmp.rename(header)
    return directory


def compile_bpf(source: Path, out_dir: Path, header_dir: Path, tools: Toolchain,
                defines: tuple[str, ...] = (), name: str | None = None) -> Path:
    """Compile source to out_dir/NAME.bpf.o unless an identical build is there."""
    if not source.is_file():
        raise UsageError(f"{source}: no such BPF source file")
    includes = sorted(source.parent.glob("*.h"))
    flags = ["-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86", "-Wall",
             *(f"-D{d}" for d in defines),
             f"-I{header_dir}", f"-I{tools.libbpf_include}", f"-I{source.parent}"]
    key = _digest(source.read_bytes(), *(p.read_bytes() for p in includes),
                  (header_dir / "vmlinux.h").stat().st_mtime_ns.to_bytes(8, "little"),
                  " ".join(flags).encode(), tools.clang.encode())
    stem = name or source.name.removesuffix(".bpf.c").removesuffix(".c")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.bpf.o"
    stamp = out_dir / f"{stem}.bpf.o.key"
    if target.exists() and stamp.exists() and stamp.read_text() == key:
        return target
    tmp = out_dir / f".{stem}.{os.getpid()}.bpf.o"
    result = subprocess.run([tools.clang, *flags, "-c", str(source), "-o", str(tmp)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MemcgBpfError(f"clang failed to compile {source}", details=result.stderr)
    tmp.rename(target)
    stamp.write_text(key)
    return target


def default_toolchain(libbpf_include: Path) -> Toolchain:
    return Toolchain(find_clang(), libbpf_include)
