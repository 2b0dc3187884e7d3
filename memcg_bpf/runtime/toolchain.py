"""Find host tools: clang for BPF, llvm-strip, and check required programs."""

from __future__ import annotations

import re
import shutil
import subprocess

from memcg_bpf.errors import MemcgBpfError

MIN_CLANG = 16


def clang_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"clang version (\d+)", out)
    return int(match.group(1)) if match else 0


def find_clang() -> str:
    """clang-19, else any clang >= 16 on PATH (a versioned name needs no version check)."""
    for major in (19, 20, 18, 17, 16):
        path = shutil.which(f"clang-{major}")
        if path:
            return path
    path = shutil.which("clang")
    if path and clang_major(path) >= MIN_CLANG:
        return path
    raise MemcgBpfError(f"no clang >= {MIN_CLANG} found: run 'apt-get install clang-19 llvm-19'")


def find_llvm_tool(tool: str, clang: str) -> str:
    """llvm-strip-19 next to clang-19, else the unversioned tool."""
    suffix = clang.rsplit("clang", 1)[1]
    for name in (f"{tool}{suffix}", tool):
        path = shutil.which(name)
        if path:
            return path
    raise MemcgBpfError(f"{tool} not found: run 'apt-get install llvm-19'")


def require(*programs: str, package_hint: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise MemcgBpfError(f"missing {', '.join(missing)}: run 'apt-get install {package_hint}'")
