"""`memcg-bpf apply FILE`: bring the loaded policies to what a TOML file declares.

    [[policy]]
    name = "batch-boost"          # the name it is loaded under
    policy = "reclaim_boost"      # a bundled policy, or a path to a .bpf.c / .bpf.o
    cgroup = "/batch"             # optional; the root when absent
    knobs = { reclaim_pages = 256 }
    allow_override = false        # optional

Stages: parse (the whole file, every entry checked, nothing touched) ->
plan (what differs from the loaded set) -> execute (unloads, then loads
and replacements, parents before children). Each policy that apply loads
records a digest of its declaration in its metadata, so a second run
finds nothing to do.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcg_bpf.errors import UsageError
from memcg_bpf.runtime.store import check_name

KEYS = {"name", "policy", "cgroup", "knobs", "allow_override"}
DIGEST_KEY = "declared_digest"


@dataclass(frozen=True)
class Declared:
    name: str
    policy: str
    cgroup: str
    knobs: dict[str, str]
    allow_override: bool
    line: int

    def sets(self) -> tuple[str, ...]:
        """The knobs as the --set arguments of load."""
        return tuple(f"{k}={v}" for k, v in sorted(self.knobs.items()))

    def digest(self, object_digest: str) -> str:
        """What apply compares with a loaded policy: the compiled object and every declared setting."""
        spec = {"object": object_digest, "cgroup": self.cgroup, "knobs": self.knobs,
                "allow_override": self.allow_override}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class FileError(UsageError):
    """A problem in the file, with where it is."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}; nothing was changed")


def knob_text(value: Any) -> str:
    """A TOML value as load's --set text: integers, booleans (1/0), strings, and arrays of them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    raise TypeError(type(value).__name__)


def table_lines(text: str) -> list[int]:
    """The line of each [[policy]] header, in order."""
    return [i for i, line in enumerate(text.splitlines(), 1) if line.strip().replace(" ", "") == "[[policy]]"]


def parse(path: Path) -> list[Declared]:
    """Every entry of the file, checked; the first problem raises FileError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}: give the path of a policies file") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileError(path, 0, f"not valid TOML ({exc})") from exc
    extra = set(data) - {"policy"}
    if extra:
        raise FileError(path, 0, f"unknown top-level key {sorted(extra)[0]!r}: the file holds [[policy]] tables only")
    tables = data.get("policy", [])
    if not isinstance(tables, list):
        raise FileError(path, 0, "'policy' must be an array of tables: write each as [[policy]]")
    lines = table_lines(text)
    out: list[Declared] = []
    for i, table in enumerate(tables):
        out.append(entry(path, lines[i] if i < len(lines) else 0, table))
    seen: dict[str, Declared] = {}
    cgroups: dict[str, Declared] = {}
    for d in out:
        if d.name in seen:
            raise FileError(path, d.line, f"policy name {d.name!r} is also declared at line {seen[d.name].line}")
        if d.cgroup in cgroups:
            raise FileError(path, d.line, f"cgroup {d.cgroup} already has policy {cgroups[d.cgroup].name!r} "
                                          f"(line {cgroups[d.cgroup].line}): one policy per cgroup")
        seen[d.name], cgroups[d.cgroup] = d, d
    return out


def entry(path: Path, line: int, table: Any) -> Declared:
    if not isinstance(table, dict):
        raise FileError(path, line, "each [[policy]] must be a table")
    unknown = set(table) - KEYS
    if unknown:
        raise FileError(path, line, f"unknown key {sorted(unknown)[0]!r}: use {', '.join(sorted(KEYS))}")
    for key in ("name", "policy"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise FileError(path, line, f"'{key}' is missing or not a string: every [[policy]] needs "
                                        "name = \"...\" and policy = \"...\"")
    try:
        check_name(table["name"])
    except UsageError as exc:
        raise FileError(path, line, exc.message) from exc
    cgroup = table.get("cgroup", "/")
    if not isinstance(cgroup, str) or not cgroup.startswith("/"):
        raise FileError(path, line, f"cgroup {cgroup!r} must be a path from the cgroup2 root, e.g. \"/batch\"")
    override = table.get("allow_override", False)
    if not isinstance(override, bool):
        raise FileError(path, line, "allow_override must be true or false")
    knobs = table.get("knobs", {})
    if not isinstance(knobs, dict):
        raise FileError(path, line, "knobs must be a table, e.g. knobs = { reclaim_pages = 256 }")
    texts = {}
    for k, v in knobs.items():
        try:
            texts[k] = knob_text(v)
        except TypeError as exc:
            raise FileError(path, line, f"knob {k!r} is a {exc}: use an integer, a boolean, a string or an "
                                        "array of them") from exc
    return Declared(table["name"], table["policy"], "/" + cgroup.strip("/") if cgroup != "/" else "/", texts,
                    override, line)


@dataclass
class Plan:
    """What apply will do, in order."""

    unload: list[str] = field(default_factory=list)
    load: list[Declared] = field(default_factory=list)
    replace: list[Declared] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.unload or self.load or self.replace)

    def lines(self) -> list[str]:
        out = [f"unload {name}" for name in self.unload]
        out += [f"load {d.name} ({d.policy} on {d.cgroup})" for d in self.load]
        out += [f"replace {d.name} ({d.policy} on {d.cgroup}, no gap)" for d in self.replace]
        out += [f"keep {name}" for name in self.keep]
        return out


def depth(cgroup: str) -> int:
    return len([p for p in cgroup.split("/") if p])


def plan(declared: list[Declared], loaded: dict[str, dict[str, Any]], digests: dict[str, str]) -> Plan:
    """declared: the file; loaded: name -> metadata of each loaded policy; digests: name -> declared digest.

    A loaded policy whose declaration is unchanged is kept; one at the same
    cgroup with another declaration is replaced (BPF_LINK_UPDATE, no gap);
    one that moved to another cgroup is unloaded and loaded again; one the
    file does not name is unloaded. Loads go parents first, so a parent
    with allow_override is there before its children; unloads go children
    first.
    """
    p = Plan()
    names = {d.name for d in declared}
    p.unload = [name for name in loaded if name not in names]
    for d in declared:
        meta = loaded.get(d.name)
        if meta is None:
            p.load.append(d)
        elif meta.get(DIGEST_KEY) == digests[d.name]:
            p.keep.append(d.name)
        elif meta.get("cgroup", "/") == d.cgroup:
            p.replace.append(d)
        else:
            p.unload.append(d.name)
            p.load.append(d)
    p.unload.sort(key=lambda n: -depth(str(loaded[n].get("cgroup", "/"))))
    p.load.sort(key=lambda d: depth(d.cgroup))
    p.replace.sort(key=lambda d: depth(d.cgroup))
    return p
