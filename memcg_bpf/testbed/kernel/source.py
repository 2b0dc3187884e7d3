"""Find the Linux 6.12 source: Debian's linux-source-6.12, or a given tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.progress import Progress

DEBIAN_PACKAGE = "linux-source-6.12"
DEBIAN_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")


@dataclass(frozen=True)
class KernelSource:
    """A pristine kernel tree and what identifies it in cache keys."""

    path: Path
    version: str
    identity: str


def makefile_version(tree: Path) -> str:
    """'6.12.117' from the top-level Makefile of a kernel tree."""
    try:
        text = (tree / "Makefile").read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"{tree} is not a kernel tree (no Makefile): pass --source DIR of a Linux 6.12 tree") from exc
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        match = re.search(rf"^{key}\s*=\s*(\d+)\s*$", text, re.M)
        if not match:
            raise UsageError(f"{tree}/Makefile has no {key}: pass --source DIR of a Linux 6.12 tree")
        fields[key] = match.group(1)
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


def check_612(tree: Path) -> str:
    version = makefile_version(tree)
    if not version.startswith("6.12."):
        raise UsageError(f"{tree} is Linux {version}, the series is for 6.12: pass --source DIR of a Linux 6.12 tree")
    return version


def given_source(tree: Path) -> KernelSource:
    """A tree the user passed with --source."""
    tree = tree.resolve()
    if not tree.is_dir():
        raise UsageError(f"--source {tree}: no such directory")
    version = check_612(tree)
    return KernelSource(tree, version, f"{version}:{tree}")


def install_debian_source(progress: Progress) -> None:
    """apt-get install linux-source-6.12 (needs root)."""
    if os.geteuid() != 0:
        raise MemcgBpfError(
            f"{DEBIAN_TARBALL} is missing and installing it needs root: "
            f"run 'apt-get install {DEBIAN_PACKAGE}' or pass --source DIR"
        )
    progress.say("source", f"installing {DEBIAN_PACKAGE} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise MemcgBpfError(
            f"apt-get install {DEBIAN_PACKAGE} failed: {tail[0]}; "
            "run 'apt-get update' and try again, or pass --source DIR"
        )


def debian_source(cache: Path, progress: Progress) -> KernelSource:
    """Unpack Debian's tarball into the cache once; reuse it while unchanged."""
    if not DEBIAN_TARBALL.exists():
        install_debian_source(progress)
    stat = DEBIAN_TARBALL.stat()
    stamp_value = f"{DEBIAN_TARBALL}:{stat.st_size}:{int(stat.st_mtime)}"
    dest = cache / "sources" / DEBIAN_PACKAGE
    stamp = cache / "sources" / f"{DEBIAN_PACKAGE}.stamp"
    tree = dest / DEBIAN_PACKAGE
    if not (stamp.exists() and stamp.read_text() == stamp_value and tree.is_dir()):
        progress.say("source", f"unpacking {DEBIAN_TARBALL} into {dest}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(DEBIAN_TARBALL), "-C", str(dest)], check=True)
        if not tree.is_dir():
            raise MemcgBpfError(f"{DEBIAN_TARBALL} did not unpack to {tree}: pass --source DIR instead")
        stamp.write_text(stamp_value)
    version = check_612(tree)
    return KernelSource(tree, version, f"debian:{version}:{stat.st_size}:{int(stat.st_mtime)}")
