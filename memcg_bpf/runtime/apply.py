"""Carry out `memcg-bpf apply`: check every declared policy, plan against what is loaded, then act.

Checking needs no privilege and touches nothing: each policy is compiled
(cached) or its object checked, its knobs are encoded against its BTF, its
cgroup is resolved. Only then are policies unloaded, loaded and replaced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.bpf.syscalls import Sys
from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.runtime import attach, catalog, loader, store
from memcg_bpf.runtime.declare import DIGEST_KEY, Declared, FileError, Plan, plan


@dataclass(frozen=True)
class Checked:
    """A declared policy with its object, where it attaches and the digest apply records."""

    declared: Declared
    obj: Path
    source: str
    ranges: dict[str, tuple[int, int]]
    target: attach.Target
    digest: str


Compile = Callable[[str], Path]


def check(path: Path, declared: list[Declared], bpf: Libbpf, compile_policy: Compile) -> list[Checked]:
    """Every entry against its policy and the cgroup tree; the first problem raises FileError."""
    out = []
    for d in declared:
        try:
            if d.policy.endswith(".o"):
                obj, source, ranges = Path(d.policy), "", {}
                if not obj.is_file():
                    raise UsageError(f"{d.policy}: no such file")
            else:
                ranges = {} if d.policy.endswith(".c") else {
                    k.name: k.range for k in catalog.find(d.policy).knobs if k.range}
                source = d.policy
                obj = compile_policy(d.policy)
            loader.check_policy(bpf, obj, d.sets(), ranges)
            target = attach.resolve(d.cgroup, d.allow_override)
        except MemcgBpfError as exc:
            raise FileError(path, d.line, f"policy {d.name!r}: {exc.message}") from exc
        digest = d.digest(hashlib.sha256(obj.read_bytes()).hexdigest())
        out.append(Checked(d, obj, source, ranges, target, digest))
    return out


def loaded(sys: Sys) -> dict[str, dict[str, Any]]:
    """name -> metadata of every policy loaded now; a broken one counts as loaded with no metadata."""
    out: dict[str, dict[str, Any]] = {}
    for entry in store.entries():
        try:
            out[entry.name] = store.read_meta(sys, entry.directory) if entry.state == "loaded" else {}
        except (MemcgBpfError, OSError):
            out[entry.name] = {}
    return out


def make_plan(checked: list[Checked], sys: Sys) -> Plan:
    return plan([c.declared for c in checked], loaded(sys), {c.declared.name: c.digest for c in checked})


def execute(p: Plan, checked: list[Checked], bpf: Libbpf, say: Callable[[str], None]) -> None:
    """Unloads (children first), then loads and replacements (parents first)."""
    by_name = {c.declared.name: c for c in checked}
    for name in p.unload:
        loader.unload(name)
        say(f"unloaded {name}")
    for d in p.load:
        run(bpf, by_name[d.name], replace=False)
        say(f"loaded {d.name} ({d.policy} on {d.cgroup})")
    for d in p.replace:
        run(bpf, by_name[d.name], replace=True)
        say(f"replaced {d.name} ({d.policy} on {d.cgroup}, no gap)")


def run(bpf: Libbpf, c: Checked, replace: bool) -> None:
    d = c.declared
    loader.load(bpf, c.obj, d.name, d.sets(), source=c.source, ranges=c.ranges,
                replace=d.name if replace else None, target=c.target, extra_meta={DIGEST_KEY: c.digest})
