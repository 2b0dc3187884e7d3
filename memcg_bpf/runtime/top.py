"""`memcg-bpf top POLICY`: the cgroups a policy counts, with its counters as rates and their memory state.

A frame is two snapshots of the policy `interval` seconds apart: for each
cgroup key of its maps, the per-second rate of every counter field (for
`telemetry`: calls, charged, failed (each a round of direct reclaim),
pages_requested), and from the cgroup's files memory.current against
memory.high and memory.max and the PSI averages of memory.pressure. Rows
are sorted by memory pressure (some avg10), then by their first rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from memcg_bpf.errors import PolicyGone
from memcg_bpf.runtime.cgroups import cgroup2_root, pressure
from memcg_bpf.runtime.fields import Kind
from memcg_bpf.runtime.stats import Reader, Snapshot, metric_name
from memcg_bpf.runtime.store import NotLoaded

MAX_RATES = 4


@dataclass
class Row:
    cgroup: str
    rates: dict[str, float]
    current: int | None = None
    high: int | None = None
    max: int | None = None
    psi: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"cgroup": self.cgroup, "rates": self.rates, "current": self.current, "high": self.high,
                "max": self.max, "psi_avg10": self.psi}


def counters(snapshot: Snapshot) -> dict[str, dict[str, float]]:
    """cgroup path -> counter field -> value, over every map keyed by cgroup."""
    out: dict[str, dict[str, float]] = {}
    for map_name, rows in snapshot.maps.items():
        for row in rows:
            key, value = row["key"], row["value"]
            if not (isinstance(key, dict) and set(key) == {"cgroup_id", "path"} and isinstance(value, dict)):
                continue
            path = key["path"] or f"id {key['cgroup_id']}"
            for name, v in value.items():
                kind = snapshot.kinds.get(metric_name(map_name, name), Kind.GAUGE)
                if kind is Kind.COUNTER and isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.setdefault(path, {})[name] = out.get(path, {}).get(name, 0) + v
    return out


def limit(text: str) -> int | None:
    text = text.strip()
    return None if text == "max" else int(text)


def memory_state(row: Row, root: Path) -> None:
    directory = root / row.cgroup.lstrip("/")
    try:
        row.current = int((directory / "memory.current").read_text())
        row.high = limit((directory / "memory.high").read_text())
        row.max = limit((directory / "memory.max").read_text())
        row.psi = {kind: values["avg10"] for kind, values in pressure(directory / "memory.pressure").items()}
    except (OSError, ValueError, KeyError):
        pass   # the root has no such files; a cgroup may be gone


def frame(reader: Reader, policy: str, interval: float, *, root: Path | None = None,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> list[Row]:
    """One frame: rates over interval seconds, the memory state at its end, most pressure first."""
    try:
        before, then = counters(reader.snapshot(policy)), clock()
        sleep(interval)
        after, now = counters(reader.snapshot(policy)), clock()
    except NotLoaded:
        raise PolicyGone(policy) from None
    root = root or cgroup2_root()
    rows = []
    for cgroup, values in after.items():
        rates = {k: (v - before.get(cgroup, {}).get(k, 0)) / (now - then) for k, v in values.items()}
        row = Row(cgroup, dict(list(rates.items())[:MAX_RATES]))
        memory_state(row, root)
        rows.append(row)
    rows.sort(key=lambda r: (-r.psi.get("some", 0.0), -next(iter(r.rates.values()), 0.0), r.cgroup))
    return rows


def mib(value: int | None) -> str:
    return "max" if value is None else f"{value / 2**20:.1f}M"


def render(policy: str, rows: list[Row], interval: float) -> str:
    names = list(rows[0].rates) if rows else []
    header = (f"{'cgroup':24} " + " ".join(f"{n + '/s':>16}" for n in names) +
              f" {'current':>9} {'high':>9} {'max':>9} {'psi some':>9} {'psi full':>9}")
    lines = [f"memcg-bpf top: policy {policy}, rates over {interval:g} s, most memory pressure first", header]
    for r in rows:
        lines.append(f"{r.cgroup:24} " + " ".join(f"{r.rates.get(n, 0):16,.1f}" for n in names) +
                     f" {mib(r.current) if r.current is not None else '-':>9} {mib(r.high):>9} {mib(r.max):>9}"
                     f" {r.psi.get('some', 0):9.2f} {r.psi.get('full', 0):9.2f}")
    if not rows:
        lines.append("(the policy has counted no cgroup yet)")
    return "\n".join(lines)
