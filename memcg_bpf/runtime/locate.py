"""Find what the policy runtime needs on this machine, without building anything.

libbpf >= 1.2 (struct_ops links), in this order:
  1. $MEMCG_BPF_LIBBPF;
  2. the newest one installed in the cache (~/.cache/memcg-bpf/libbpf/VERSION/)
     by 'memcg-bpf libbpf build' or by a kernel build;
  3. the system's libbpf.so.1, if it is new enough (Debian 12's 1.1 is not).
The headers policies compile with (bpf/bpf_helpers.h) come from the cache
install, else /usr/include (libbpf-dev). Nothing here runs apt, unpacks sources or
looks at the test-kernel build.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.paths import cache_dir

MIN_LIBBPF = (1, 2)
SYSTEM_LIB_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"), Path("/usr/lib64"),
                   Path("/usr/local/lib"), Path("/usr/lib"))
SYSTEM_INCLUDE = Path("/usr/include")

NO_LIBBPF = ("no libbpf >= {need} found{why}: run 'memcg-bpf libbpf build' once (builds it from the "
             "kernel source into {cache}), or set MEMCG_BPF_LIBBPF=/path/to/libbpf.so")


def libbpf_store() -> Path:
    """Where 'memcg-bpf libbpf build' installs libbpf: one directory per version."""
    return cache_dir() / "libbpf"


def parse_version(text: str) -> tuple[int, ...]:
    """'1.5.0' or 'libbpf.so.1.5.0' -> (1, 5, 0); () if there is no version."""
    match = re.search(r"(\d+(?:\.\d+)+)$", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def installed() -> list[tuple[tuple[int, ...], Path]]:
    """(version, install directory) of every libbpf in the cache, newest first."""
    store = libbpf_store()
    found = []
    for directory in store.iterdir() if store.is_dir() else []:
        version = parse_version(directory.name)
        if version and (directory / "lib" / "libbpf.so").is_file():
            found.append((version, directory))
    return sorted(found, reverse=True)


def system_libbpf() -> tuple[tuple[int, ...], Path] | None:
    """The system's libbpf.so.1 and its version (from the file it resolves to)."""
    for directory in SYSTEM_LIB_DIRS:
        path = directory / "libbpf.so.1"
        if path.exists():
            return parse_version(os.path.realpath(path)), path
    return None


def find_libbpf() -> Path:
    env = os.environ.get("MEMCG_BPF_LIBBPF")
    if env:
        if not Path(env).is_file():
            raise MemcgBpfError(f"MEMCG_BPF_LIBBPF={env}: no such file; point it at a libbpf.so >= 1.2 "
                                "or unset it")
        return Path(env)
    cached = installed()
    if cached and cached[0][0] >= MIN_LIBBPF:
        return cached[0][1] / "lib" / "libbpf.so"
    system = system_libbpf()
    if system and system[0] >= MIN_LIBBPF:
        return system[1]
    why = f" (the system's {system[1]} is {'.'.join(map(str, system[0]))})" if system else ""
    raise MemcgBpfError(NO_LIBBPF.format(need=".".join(map(str, MIN_LIBBPF)), why=why, cache=libbpf_store()))


def find_include() -> Path:
    """A directory with bpf/bpf_helpers.h: the cached libbpf's, else the system's."""
    cached = installed()
    if cached and (cached[0][1] / "include" / "bpf" / "bpf_helpers.h").is_file():
        return cached[0][1] / "include"
    if (SYSTEM_INCLUDE / "bpf" / "bpf_helpers.h").is_file():
        return SYSTEM_INCLUDE
    raise MemcgBpfError(f"no libbpf headers (bpf/bpf_helpers.h) found: run 'memcg-bpf libbpf build' once "
                        f"(installs them into {libbpf_store()}), or 'apt-get install libbpf-dev'")
