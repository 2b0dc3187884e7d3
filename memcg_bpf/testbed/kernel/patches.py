"""The patch series: read `series`, hash it, apply it with patch(1)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError, UsageError


@dataclass(frozen=True)
class Series:
    """The patches named by a quilt-style `series` file, in order."""

    directory: Path
    patches: tuple[Path, ...]

    def added_symbols(self) -> set[str]:
        """Kconfig symbols the series introduces ('+config NAME' lines)."""
        names = set()
        for patch in self.patches:
            for line in patch.read_text(errors="replace").splitlines():
                match = re.match(r"^\+\s*(?:menu)?config\s+(\w+)\s*$", line)
                if match:
                    names.add(match.group(1))
        return names

    def digest(self) -> str:
        """What the series changes, as a hash: the same for a prefix of a longer series.

        git format-patch numbers each patch against the length of the series
        ("[PATCH 3/8]") and names its commit: neither changes the tree, so
        neither counts, and appending a patch keeps every prefix's kernels cached.
        """
        h = hashlib.sha256()
        for patch in self.patches:
            h.update(patch.name.encode() + b"\0")
            h.update(normalized(patch.read_bytes()))
        return h.hexdigest()


GIT_FROM_LINE = re.compile(rb"\AFrom [0-9a-f]{40} Mon Sep 17 00:00:00 2001\n")
PATCH_NUMBER = re.compile(rb"^(Subject: \[PATCH)(?: v\d+)? \d+/\d+\]", re.MULTILINE)


def normalized(patch: bytes) -> bytes:
    """A patch without what format-patch adds for the series around it (its commit id, its number)."""
    return PATCH_NUMBER.sub(rb"\1]", GIT_FROM_LINE.sub(b"", patch), count=1)


def read_series(directory: Path) -> Series:
    series = directory / "series"
    if not series.is_file():
        raise UsageError(f"{series} is missing: the patch directory needs a series file naming the patches in order")
    patches = []
    for line in series.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        path = directory / name
        if not path.is_file():
            raise UsageError(f"{series} names {name}, which does not exist: fix the series file")
        patches.append(path)
    if not patches:
        raise UsageError(f"{series} names no patches")
    return Series(directory, tuple(patches))


_HUNK_FAILED = re.compile(r"Hunk #(\d+) FAILED at (\d+)")
_FILE = re.compile(r"^(?:patching|checking) file (.+)$", re.M)


def describe_failure(output: str) -> str:
    """'mm/memcontrol.c hunk #2 (at line 2188)' from patch(1) output."""
    failures = []
    current = "?"
    for line in output.splitlines():
        file_match = _FILE.match(line)
        if file_match:
            current = file_match.group(1).strip("'\"")
            continue
        hunk = _HUNK_FAILED.search(line)
        if hunk:
            failures.append(f"{current} hunk #{hunk.group(1)} (at line {hunk.group(2)})")
    if failures:
        return ", ".join(failures)
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output from patch"


def apply_series(series: Series, tree: Path) -> None:
    """Apply every patch with `patch -p1`; name the patch and hunk that fail."""
    for patch in series.patches:
        result = subprocess.run(
            ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
             "--reject-file=-", "-i", str(patch)],
            cwd=tree, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise MemcgBpfError(
                f"patch {patch.name} does not apply to {tree}: {describe_failure(result.stdout + result.stderr)}; "
                "rebase the series on this tree or pass --source DIR of a matching 6.12 tree",
                details=result.stdout + result.stderr,
            )
