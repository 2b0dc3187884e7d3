"""Compile BPF C against a vmlinux.h made from a kernel's BTF, cached by content."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.bpf.vmlinux_h import dump_c, raw_btf
from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.runtime.preflight import MEMCG_OPS_MARK, VMLINUX_BTF as RUNNING_BTF, kernel_has_memcg_ops, no_memcg_ops



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
    """Generate (once per BTF content) and return the directory holding vmlinux.h.

    The key is the raw BTF's hash: the same for a vmlinux file and the kernel
    it boots, so objects built on the host are found inside the VM.
    """
    if not btf.exists():
        raise UsageError(f"{btf} does not exist: pass --btf FILE (e.g. the built vmlinux)")
    raw = raw_btf(bpf, btf)
    if MEMCG_OPS_MARK not in raw:
        raise UsageError(f"{btf} has no memcg_ops type, it is not the patched kernel's BTF: pass --btf with the "
                         "vmlinux from 'memcg-bpf kernel build --json', or run inside 'memcg-bpf vm run'")
    key = _digest(raw)
    for base in (cache, fallback_cache()):
        header = base / "vmlinux-h" / key / "vmlinux.h"
        if header.exists():
            return header.parent
    directory = writable(cache) / "vmlinux-h" / key
    directory.mkdir(parents=True, exist_ok=True)
    header = directory / "vmlinux.h"
    tmp = directory / f".vmlinux.h.{os.getpid()}"
    tmp.write_text(dump_c(bpf, btf))
    tmp.rename(header)
    return directory


def fallback_cache() -> Path:
    """Inside the test VM the host's cache is read-only: write here instead."""
    return Path("/tmp/memcg-bpf-cache")


def writable(cache: Path) -> Path:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return cache
    except OSError:
        return fallback_cache()


def compile_bpf(source: Path, out_dir: Path, header_dir: Path, tools: Toolchain,
                defines: tuple[str, ...] = (), name: str | None = None,
                also_look_in: tuple[Path, ...] = (), includes: tuple[Path, ...] = ()) -> Path:
    """Compile source to out_dir/NAME.bpf.o unless an identical build is there (or in also_look_in)."""
    if not source.is_file():
        raise UsageError(f"{source}: no such BPF source file")
    headers = sorted(h for d in (source.parent, *includes) for h in d.glob("*.h"))
    flags = ["-target", "bpf", "-g", "-O2", "-D__TARGET_ARCH_x86", "-Wall",
             *(f"-D{d}" for d in defines), *(f"-I{d}" for d in includes),
             f"-I{header_dir}", f"-I{tools.libbpf_include}", f"-I{source.parent}"]
    # Content only, no paths: the same policy from another checkout, or inside the
    # VM (where the host's cache is read-only), reuses the object.
    key = _digest(source.read_bytes(), *(p.read_bytes() for p in headers), header_dir.name.encode(),
                  " ".join(defines).encode(), Path(tools.clang).name.encode())
    stem = name or source.name.removesuffix(".bpf.c").removesuffix(".c")
    for directory in (*also_look_in, out_dir):
        target = directory / f"{stem}.bpf.o"
        stamp = directory / f"{stem}.bpf.o.key"
        if target.exists() and stamp.exists() and stamp.read_text() == key:
            return target
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.bpf.o"
    tmp = out_dir / f".{stem}.{os.getpid()}.bpf.o"
    result = subprocess.run([tools.clang, *flags, "-c", str(source), "-o", str(tmp)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise MemcgBpfError(f"clang failed to compile {source}", details=result.stderr)
    tmp.rename(target)
    (out_dir / f"{stem}.bpf.o.key").write_text(key)
    return target


def build_objects(bpf: Libbpf, sources: list[Path], btf: Path, cache: Path, tools: Toolchain,
                  out_dir: Path | None = None) -> list[Path]:
    """Compile sources against btf; by default into the cache, keyed by the BTF's content."""
    headers = vmlinux_h(bpf, btf, cache)
    if out_dir is not None:
        return [compile_bpf(src, out_dir, headers, tools) for src in sources]
    shared = cache / "objs" / headers.name
    target = writable(cache) / "objs" / headers.name
    return [compile_bpf(src, target, headers, tools, also_look_in=(shared,)) for src in sources]


def default_btf(explicit: Path | None) -> Path:
    """--btf FILE, else the running kernel's BTF, which must have memcg_ops."""
    if explicit is not None:
        return explicit
    if kernel_has_memcg_ops(RUNNING_BTF):
        return RUNNING_BTF
    raise MemcgBpfError(f"{no_memcg_ops()}; or compile for another kernel with --btf VMLINUX")
