"""Build libbpf from a kernel tree's tools/lib/bpf and install it where the runtime looks.

The runtime (memcg_bpf.locate) never builds anything; this is the explicit
step behind 'memcg-bpf libbpf build', and a kernel build installs the libbpf
it built the same way. Installs are per version and atomic (a temporary
directory renamed into place), so a runtime command never sees half of one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.runtime.locate import libbpf_store
from memcg_bpf.progress import Progress


def install(lib: Path, include: Path, version: str) -> Path:
    """Copy libbpf.so and its headers into the store as VERSION (kept if already there)."""
    store = libbpf_store()
    final = store / version
    if (final / "lib" / "libbpf.so").is_file():
        return final
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=store))
    try:
        (tmp / "lib").mkdir()
        shutil.copy2(lib, tmp / "lib" / "libbpf.so")
        shutil.copytree(include, tmp / "include")
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "lib" / "libbpf.so").is_file():   # not a concurrent install that won
            raise
    return final


def built_version(out: Path) -> str:
    sonames = sorted(out.glob("libbpf.so.*.*"))
    if not sonames:
        raise MemcgBpfError(f"libbpf.so was not built under {out}")
    return re.sub(r"^libbpf\.so\.", "", sonames[-1].name)


def make_tool(directory: Path, args: list[str], jobs: int, what: str) -> None:
    """make -C directory ARGS, or an error with the end of make's output."""
    result = subprocess.run(["make", "-C", str(directory), f"-j{jobs}", *args],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise MemcgBpfError(f"building {what} failed; its output ends:\n{tail}")


def make(tree: Path, out: Path, headers: Path, jobs: int) -> None:
    """Build tree's tools/lib/bpf into out (libbpf.so.X.Y.Z) and its headers into headers/include."""
    src = tree / "tools" / "lib" / "bpf"
    make_tool(src, [f"OUTPUT={out}/"], jobs, "libbpf")
    make_tool(src, [f"OUTPUT={out}/", f"DESTDIR={headers}", "prefix=", "install_headers"], jobs, "libbpf")


def build(tree: Path, jobs: int, progress: Progress) -> Path:
    """make tools/lib/bpf of tree in a scratch directory, then install; returns the install."""
    src = tree / "tools" / "lib" / "bpf"
    if not (src / "Makefile").is_file():
        raise MemcgBpfError(f"{tree} has no tools/lib/bpf/Makefile: pass a Linux source tree with --source")
    with tempfile.TemporaryDirectory(prefix="memcg-bpf-libbpf-") as scratch:
        out, headers = Path(scratch) / "out", Path(scratch) / "headers"
        out.mkdir()
        progress.say("libbpf", f"building libbpf from {src}")
        make(tree, out, headers, jobs)
        version = built_version(out)
        final = install(sorted(out.glob("libbpf.so.*.*"))[-1], headers / "include", version)
    progress.say("libbpf", f"libbpf {version} installed in {final}")
    return final
