"""BPF map types, and how many bytes a lookup in a map of each type writes.

The kernel's BPF_MAP_LOOKUP_ELEM takes no buffer size: it writes
value_size bytes, or for a per-CPU map roundup(value_size, 8) bytes for
each possible CPU. A reader that sizes its buffer from anything else
overflows it, so a lookup in a map of a type not listed as readable here is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from memcg_bpf.errors import MemcgBpfError


class MapType(IntEnum):
    """enum bpf_map_type (include/uapi/linux/bpf.h, Linux 6.12)."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


# The types whose lookups copy one value per possible CPU (libbpf's validate_map_op lists the same four).
PER_CPU = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                     MapType.PERCPU_CGROUP_STORAGE})
# The types whose lookups by key copy exactly value_size bytes and whose keys can be iterated.
PLAIN = frozenset({MapType.HASH, MapType.ARRAY, MapType.LRU_HASH, MapType.LPM_TRIE, MapType.ARRAY_OF_MAPS,
                   MapType.HASH_OF_MAPS, MapType.CGROUP_STORAGE})


class UnreadableMap(MemcgBpfError):
    """A map whose values memcg-bpf does not know how to read."""


def type_name(map_type: int) -> str:
    try:
        return MapType(map_type).name
    except ValueError:
        return f"type {map_type}"


@dataclass(frozen=True)
class ValueLayout:
    """Where a lookup's bytes go: `copies` values (one per possible CPU, or one), `stride` bytes apart."""

    value_size: int
    copies: int
    stride: int

    @property
    def buffer_size(self) -> int:
        return self.copies * self.stride

    def split(self, raw: bytes) -> list[bytes]:
        return [raw[i * self.stride: i * self.stride + self.value_size] for i in range(self.copies)]


def layout(map_type: int, value_size: int, possible_cpus: int, name: str = "") -> ValueLayout:
    """The layout of a lookup's result in a map of map_type; UnreadableMap for types not listed above."""
    if map_type in PER_CPU:
        return ValueLayout(value_size, possible_cpus, (value_size + 7) & ~7)
    if map_type in PLAIN:
        return ValueLayout(value_size, 1, value_size)
    what = f"map {name}" if name else "the map"
    raise UnreadableMap(f"{what} is a {type_name(map_type)} map, whose values memcg-bpf cannot read")
