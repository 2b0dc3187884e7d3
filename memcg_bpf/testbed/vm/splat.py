"""Find kernel splats (WARN, BUG, Oops, KASAN, lockdep, RCU stalls, hung tasks) in a console log."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each pattern matches the first line the kernel prints for one kind of splat.
_PATTERNS = [
    r"WARNING: CPU: \d+ PID: \d+ at ",          # WARN()/WARN_ON()
    r"WARNING: .*(locking|lock held|lock state|recursive|lock order|RCU usage)",  # lockdep
    r"WARNING: suspicious RCU usage",
    r"BUG: ",                                   # BUG: sleeping function..., KASAN, bad page...
    r"kernel BUG at ",
    r"Oops: ",
    r"general protection fault",
    r"KASAN: ",
    r"UBSAN: ",
    r"Kernel panic - not syncing",
    r"rcu: INFO: \w+ (self-)?detected stalls",
    r"INFO: rcu_\w+ (self-)?detected stalls",
    r"INFO: task .* blocked for more than \d+ seconds",
    r"watchdog: BUG: soft lockup",
]
_SPLAT = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")


@dataclass(frozen=True)
class Splat:
    line: str
    excerpt: str


def find_splats(console: str, context: int = 25) -> list[Splat]:
    """Every splat's first line, with the lines that follow it."""
    lines = console.splitlines()
    splats = []
    for index, raw in enumerate(lines):
        line = _TIMESTAMP.sub("", raw)
        if _SPLAT.search(line):
            excerpt = "\n".join(lines[index:index + context])
            splats.append(Splat(line.strip(), excerpt))
    return splats
