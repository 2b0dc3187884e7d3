"""Where a policy attaches: the cgroup and flags written into its memcg_ops before load.

The kernel reads `cgroup_id` (a cgroup2 directory's id, 0 for the root,
where a policy governs the whole machine) and `flags` from the struct_ops
map's data when the link is created. The nearest attached ancestor-or-self
governs a cgroup; a policy without MEMCG_OPS_F_ALLOW_OVERRIDE forbids
policies below it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.bpf import btf as B
from memcg_bpf.bpf.libbpf import Map
from memcg_bpf.errors import UsageError
from memcg_bpf.runtime import cgroups

ALLOW_OVERRIDE = 1 << 0


@dataclass(frozen=True)
class Target:
    """A cgroup a policy attaches to: its path relative to the cgroup2 root ('/' or '/a/b') and id."""

    path: str
    cgroup_id: int        # 0: the root
    allow_override: bool = False

    @property
    def flags(self) -> int:
        return ALLOW_OVERRIDE if self.allow_override else 0

    @property
    def is_root(self) -> bool:
        return self.cgroup_id == 0


ROOT = Target("/", 0)


def resolve(spec: str | None, allow_override: bool, root: Path | None = None) -> Target:
    """'--cgroup SPEC' -> a Target; the cgroup must exist and have the memory controller."""
    if spec is None:
        return Target("/", 0, allow_override)
    root = root or cgroups.cgroup2_root()
    path = cgroups.resolve(spec, root)
    if not path.is_dir():
        raise UsageError(f"cgroup {spec!r} does not exist: create it with 'mkdir {path}'")
    if path == root:
        return Target("/", 0, allow_override)
    if not (path / "memory.max").exists():
        raise UsageError(f"cgroup {spec!r} has no memory controller: enable it with "
                         f"'echo +memory > {path.parent / 'cgroup.subtree_control'}'")
    return Target("/" + str(path.relative_to(root)), cgroups.cgroup_id(path), allow_override)


FIELDS = ("cgroup_id", "flags")


def _fields(btf: B.Btf, ops: Map) -> dict[str, tuple[int, int]]:
    """Address and size of cgroup_id and flags in the map's data, for those the policy's struct has."""
    base = ops.initial_value_address()
    members = {m.name: m for m in btf.resolve(ops.btf_value_type_id).members}
    return {name: (base + members[name].bit_offset // 8, btf.size(members[name].type_id))
            for name in FIELDS if name in members}


def write(btf: B.Btf, ops: Map, target: Target) -> None:
    """Write target into the (not yet loaded) memcg_ops map's data; btf: the object's."""
    fields = _fields(btf, ops)
    missing = [name for name in FIELDS if name not in fields]
    if missing and target != ROOT:
        raise UsageError(f"the policy's struct memcg_ops has no {' or '.join(missing)}: it was built for a kernel "
                         "without per-cgroup attach; rebuild it against this kernel's vmlinux.h")
    for name, value in zip(FIELDS, (target.cgroup_id, target.flags)):
        if name in fields:
            address, size = fields[name]
            ctypes.memmove(address, value.to_bytes(size, "little"), size)


def read(btf: B.Btf, ops: Map) -> tuple[int, int]:
    """(cgroup_id, flags) as the map's data holds them; (0, 0) for a policy without those members."""
    fields = _fields(btf, ops)
    cgroup_id, flags = (int.from_bytes(ctypes.string_at(*fields[name]), "little") if name in fields else 0
                        for name in FIELDS)
    return cgroup_id, flags
