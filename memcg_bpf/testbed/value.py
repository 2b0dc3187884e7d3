"""`bench value`: does a BPF policy beat kernel defaults, static knobs and a userspace controller?

Two cases, each a parent cgroup /value (memory.high below memory.max, swap
on zram) with a latency-sensitive service and a batch job with phased
demand:
- priority: the service alternates active and idle; the policy protects
  it while it is active (priority with idle_ms), the static mode gives it
  memory.low, the userspace controller sets memory.low from its activity;
- proactive: the service runs steadily; the policy asks for reclaim ahead
  of the limit (proactive), the userspace controller writes memory.reclaim.
Modes run in one boot per repetition, in an order rotated between
repetitions, after an `alone` reference run (the service without the
batch job) that the validity gate compares against.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

MODES = ("none", "static", "uctl", "bpf")
CASES = ("priority", "proactive")
# An epoch violates the service's SLO when its p99 latency is above this.
SLO_US = 50_000
# The validity gate: without a policy the service must be clearly worse off than alone.
HURT_FACTOR = 2.0


@dataclass(frozen=True)
class ValuePlan:
    reps: int
    max_mb: int
    high_mb: int
    protect_mb: int
    epoch_ms: int
    service_ws_mb: int
    service_hz: int
    service_touches: int
    service_alloc_kb: int
    active_s: int
    idle_s: int
    phases: tuple[str, ...]
    uctl_period_ms: int = 100
    idle_ms: int = 500
    proactive_percent: int = 80
    proactive_batch_pages: int = 32
    timeout: int = 600
    modes: tuple[str, ...] = field(default=MODES)

    @property
    def seconds(self) -> float:
        return sum(float(p.split(":")[1]) for p in self.phases)

    def cases(self, service_cgroup: str) -> dict[str, dict[str, Any]]:
        """The per-case arguments of the guest runner (bench/value.py)."""
        secs = f"{self.seconds:g}"
        base = [self.service_ws_mb, self.service_hz, self.service_touches, secs]
        return {
            "priority": {
                "service_args": [*base, self.active_s, self.idle_s, self.service_alloc_kb],
                "phases": list(self.phases),
                "policy": ["priority", "--set", f"cgroup_ids={service_cgroup}", "--set", f"idle_ms={self.idle_ms}"],
                "uctl_args": ["priority", f"/sys/fs/cgroup{service_cgroup}", self.protect_mb << 20, self.idle_ms,
                              self.uctl_period_ms],
            },
            "proactive": {
                "service_args": [*base, 0, 0, self.service_alloc_kb],
                "phases": list(self.phases),
                "policy": ["proactive", "--set", f"percent={self.proactive_percent}",
                           "--set", f"batch_pages={self.proactive_batch_pages}"],
                "uctl_args": ["proactive", "/sys/fs/cgroup/value", self.proactive_percent,
                              self.proactive_batch_pages, self.uctl_period_ms],
            },
        }

    def runs(self, rep: int) -> list[list[str]]:
        """The runs of repetition rep (0-based): per case, alone first, then the modes rotated by rep."""
        k = rep % len(self.modes)
        order = self.modes[k:] + self.modes[:k]
        return [[case, mode] for case in CASES for mode in ("alone", *order)]


FULL_VALUE = ValuePlan(reps=5, max_mb=256, high_mb=224, protect_mb=112, epoch_ms=200,
                       service_ws_mb=96, service_hz=50, service_touches=64, service_alloc_kb=64,
                       active_s=4, idle_s=4, phases=("idle:2:0", "steady:4:96", "burst:4:256", "recovery:6:48"))
QUICK_VALUE = ValuePlan(reps=1, max_mb=64, high_mb=56, protect_mb=28, epoch_ms=200,
                        service_ws_mb=24, service_hz=25, service_touches=16, service_alloc_kb=64,
                        active_s=1, idle_s=1, phases=("idle:0.5:0", "steady:1:24", "burst:1:64", "recovery:1:12"),
                        timeout=300)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def delta(samples: list[dict[str, Any]], cgroup: str, *keys: str) -> int:
    """Growth of a counter of cgroup ("value", "service", "batch") between the first and the last sample."""
    def get(sample: dict[str, Any]) -> int:
        node: Any = sample[cgroup]
        for key in keys:
            node = node.get(key, 0) if isinstance(node, dict) else 0
        return int(node)
    return get(samples[-1]) - get(samples[0]) if len(samples) > 1 else 0


def slo_epochs(service: dict[str, Any], epoch_ms: int) -> tuple[int, int]:
    """(epochs whose p99 latency broke the SLO, epochs with requests)."""
    epochs: dict[int, list[float]] = {}
    for at, lat in zip(service["at_ms"], service["latency_us"]):
        epochs.setdefault(int(at // epoch_ms), []).append(lat)
    return sum(percentile(v, 99) > SLO_US for v in epochs.values()), len(epochs)


def policy_activations(run: dict[str, Any]) -> list[float]:
    """bpf: when the priority policy last saw the service become active (seconds from the run's start).

    Its `activated_ns` (CLOCK_MONOTONIC, as the runner's time.monotonic())
    is the service's first charge after idle_ms without one: from then on
    the policy protects it, as the userspace controller does from its
    memory.low write.
    """
    try:
        rows = json.loads(run["stats"]["stdout"])["maps"]["cgroups"]
    except (KeyError, TypeError, ValueError):
        return []
    return [row["value"]["activated_ns"] / 1e9 - run["start_monotonic"] for row in rows
            if isinstance(row.get("value"), dict) and row["value"].get("activated_ns")]


def reaction_ms(run: dict[str, Any], plan: ValuePlan) -> float | None:
    """priority: from each start of the service's active phase to the next protective action, median, in ms.

    The action is the userspace controller's write (uctl) or the policy's
    switch to active (bpf, only its latest one is kept: one per run).
    """
    if run["case"] != "priority":
        return None
    if "uctl" in run:
        actions = [t - run["start_monotonic"] for t in run["uctl"].get("write_at", [])]
    else:
        actions = policy_activations(run)
    if not actions:
        return None
    period = plan.active_s + plan.idle_s
    starts = [k * period for k in range(1, int(plan.seconds // period) + 1)]
    waits = [min((a - s for a in actions if a >= s), default=None) for s in starts]
    found = [w * 1e3 for w in waits if w is not None and w < period]
    return statistics.median(found) if found else None


def summarize(run: dict[str, Any], plan: ValuePlan) -> dict[str, Any]:
    """One run's numbers for the report."""
    lat = run["service"]["latency_us"]
    samples = run["samples"]
    violating, epochs = slo_epochs(run["service"], plan.epoch_ms)
    out: dict[str, Any] = {
        "case": run["case"], "mode": run["mode"], "requests": run["service"]["requests"],
        "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99), "p999_us": percentile(lat, 99.9),
        "slo_epochs": violating, "epochs": epochs,
        "high_events": delta(samples, "value", "events", "high"),
        "max_events": delta(samples, "value", "events", "max"),
        "oom_kill": delta(samples, "value", "events", "oom_kill"),
        "service_psi_some_us": delta(samples, "service", "pressure", "some"),
        "service_psi_full_us": delta(samples, "service", "pressure", "full"),
        "batch_psi_some_us": delta(samples, "batch", "pressure", "some"),
        "pgscan_direct": delta(samples, "value", "stat", "pgscan_direct"),
        "service_refaults": delta(samples, "service", "stat", "workingset_refault_anon"),
        "service_cpu_us": delta(samples, "service", "cpu_usec"),
        "batch_cpu_us": delta(samples, "batch", "cpu_usec"),
    }
    if "batch" in run:
        pages = sum(run["batch"]["pages"])
        out["batch_mb_s"] = pages * 4096 / 2**20 / plan.seconds
    if "uctl" in run:
        u = run["uctl"]
        out["controller_cpu_us"] = u["cpu_user_us"] + u["cpu_system_us"]
        out["controller_writes"] = u["writes"]
        out["reaction_ms"] = reaction_ms(run, plan)
    if "programs" in run:
        out["controller_cpu_us"] = run["programs"]["run_time_ns"] / 1e3
        out["controller_calls"] = run["programs"]["run_cnt"]
        out["reaction_ms"] = reaction_ms(run, plan)
    return out


def median_spread(values: list[float]) -> tuple[float, float]:
    """The median and the spread (max - min) / median, in percent."""
    mid = statistics.median(values)
    return mid, (max(values) - min(values)) / mid * 100 if mid else 0.0


def gate(summaries: list[dict[str, Any]], case: str) -> dict[str, Any]:
    """Valid only if, without a policy, the parent crossed memory.high and the service was hurt."""
    def p99s(mode: str) -> list[float]:
        return [s["p99_us"] for s in summaries if s["case"] == case and s["mode"] == mode]
    none, alone = p99s("none"), p99s("alone")
    highs = [s["high_events"] for s in summaries if s["case"] == case and s["mode"] == "none"]
    crossed = bool(highs) and min(highs) > 0
    hurt = bool(none and alone) and statistics.median(none) >= HURT_FACTOR * statistics.median(alone)
    return {"crossed_high": crossed, "service_hurt": hurt, "valid": crossed and hurt,
            "none_p99_us": statistics.median(none) if none else None,
            "alone_p99_us": statistics.median(alone) if alone else None}
