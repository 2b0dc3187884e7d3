"""The value section of REPORT.md and its plot, from results/value.json."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from memcg_bpf.testbed.value import CASES, HURT_FACTOR, MODES, SLO_US, ValuePlan, gate, median_spread, summarize

MODE_NAMES = {"alone": "alone (no batch job)", "none": "kernel defaults", "static": "static memory.low",
              "uctl": "userspace controller", "bpf": "BPF policy"}
# (column, summary key, unit scale, digits)
COLUMNS = [("p50 ms", "p50_us", 1e-3, 1), ("p99 ms", "p99_us", 1e-3, 1), ("p99.9 ms", "p999_us", 1e-3, 1),
           ("SLO epochs", "slo_epochs", 1, 0), ("batch MiB/s", "batch_mb_s", 1, 1),
           ("high events", "high_events", 1, 0), ("pgscan_direct", "pgscan_direct", 1, 0),
           ("service refaults", "service_refaults", 1, 0), ("service PSI some ms", "service_psi_some_us", 1e-3, 0),
           ("service CPU ms", "service_cpu_us", 1e-3, 0), ("batch CPU ms", "batch_cpu_us", 1e-3, 0),
           ("controller CPU ms", "controller_cpu_us", 1e-3, 1)]


def plan_of(value: dict[str, Any]) -> ValuePlan:
    p = dict(value["plan"])
    for key in ("phases", "modes"):
        p[key] = tuple(p[key])
    return ValuePlan(**p)


def summaries(value: dict[str, Any]) -> list[dict[str, Any]]:
    plan = plan_of(value)
    return [{**summarize(run, plan), "rep": rep} for rep, boot in enumerate(value["boots"]) for run in boot]


def cell(rows: list[dict[str, Any]], key: str, scale: float, digits: int) -> str:
    values = [r[key] * scale for r in rows if r.get(key) is not None]
    if not values:
        return "–"
    mid, spread = median_spread(values)
    text = f"{mid:,.{digits}f}"
    return f"{text} ({spread:.0f} %)" if len(values) > 1 and mid else text


def reaction_lines(rows: list[dict[str, Any]], case: str) -> list[str]:
    """The median reaction of each controlling mode, from the service's switch to active to its action."""
    what = {"uctl": "userspace controller (its memory.low write)",
            "bpf": "BPF policy (its switch to active, at the service's first charge after the switch)"}
    found = []
    for mode, label in what.items():
        values = [r["reaction_ms"] for r in rows
                  if r["case"] == case and r["mode"] == mode and r.get("reaction_ms") is not None]
        if values:
            mid, spread = median_spread(values)
            found.append(f"{label}: median {mid:.1f} ms over {len(values)} repetitions (spread {spread:.0f} %)")
    if not found:
        return []
    return ["- Reaction, from the service's switch to active to the first protective action: "
            + "; ".join(found) + "."]


def table(rows: list[dict[str, Any]], case: str) -> list[str]:
    out = ["| mode | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for mode in ("alone", *MODES):
        picked = [r for r in rows if r["case"] == case and r["mode"] == mode]
        if picked:
            out.append(f"| {MODE_NAMES[mode]} | " + " | ".join(cell(picked, k, s, d) for _, k, s, d in COLUMNS) + " |")
    return out


def verdict(rows: list[dict[str, Any]], case: str) -> list[str]:
    """What the numbers say about BPF against each other mode: p99 and batch throughput, beyond the spread or not."""
    def values(mode: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["case"] == case and r["mode"] == mode and r.get(key) is not None]

    out = []
    bpf_p99, bpf_batch = values("bpf", "p99_us"), values("bpf", "batch_mb_s")
    for mode in ("none", "static", "uctl"):
        other_p99, other_batch = values(mode, "p99_us"), values(mode, "batch_mb_s")
        if not (bpf_p99 and other_p99):
            continue
        parts = []
        for what, ours, theirs, lower_better in (("service p99", bpf_p99, other_p99, True),
                                                  ("batch throughput", bpf_batch, other_batch, False)):
            if not (ours and theirs):
                continue
            a, b = statistics.median(ours), statistics.median(theirs)
            change = (a - b) / b * 100 if b else 0.0
            # Apart only if the ranges of the repetitions do not overlap.
            apart = max(ours) < min(theirs) or min(ours) > max(theirs)
            better = (a < b) == lower_better
            word = ("better" if better else "worse") if apart else "equivalent (ranges overlap)"
            parts.append(f"{what} {change:+.0f} % ({word})")
        out.append(f"- BPF against {MODE_NAMES[mode]}: " + "; ".join(parts) + ".")
    return out


def plot(value: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = plan_of(value)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for col, case in enumerate(CASES):
        over_time, bars = axes[0][col], axes[1][col]
        # Latency over time: the first repetition, p99 per epoch, one line per mode.
        for run in value["boots"][0]:
            if run["case"] != case:
                continue
            epochs: dict[int, list[float]] = {}
            for at, lat in zip(run["service"]["at_ms"], run["service"]["latency_us"]):
                epochs.setdefault(int(at // plan.epoch_ms), []).append(lat / 1e3)
            xs = sorted(epochs)
            over_time.plot([x * plan.epoch_ms / 1e3 for x in xs],
                           [sorted(epochs[x])[int(0.99 * (len(epochs[x]) - 1))] for x in xs],
                           label=MODE_NAMES[run["mode"]], linewidth=1)
        over_time.set_yscale("log")
        over_time.set_title(f"{case}: service p99 per {plan.epoch_ms} ms epoch (ms), repetition 1")
        over_time.set_xlabel("s")
        over_time.legend(fontsize=7)
        modes = [m for m in ("alone", *MODES) if any(r["case"] == case and r["mode"] == m for r in rows)]
        mids, lows, highs = [], [], []
        for m in modes:
            v = [r["p99_us"] / 1e3 for r in rows if r["case"] == case and r["mode"] == m]
            mid = statistics.median(v)
            mids.append(mid)
            lows.append(mid - min(v))
            highs.append(max(v) - mid)
        bars.bar(range(len(modes)), mids, yerr=[lows, highs], capsize=3)
        bars.set_xticks(range(len(modes)), [MODE_NAMES[m] for m in modes], rotation=20, fontsize=7)
        bars.set_title(f"{case}: service p99 (ms), median and range over repetitions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(value: dict[str, Any], results: Path) -> list[str]:
    plan = plan_of(value)
    rows = summaries(value)
    plot(value, rows, results / "value.png")
    meta = value.get("meta", {})
    lines = ["## 3. Value: BPF policies against kernel defaults, static knobs and a userspace controller", "",
             f"`/value` with memory.max={plan.max_mb} MiB and memory.high={plan.high_mb} MiB, swap on zram, "
             f"2 vCPUs (counted in the guest), real TCG time ({meta.get('tcg_thread_real_time', '?')}-threaded), "
             f"the {meta.get('kernel_variant', '?')} kernel. Two children: *service* (`bench/service.c`: "
             f"{plan.service_ws_mb} MiB working set, {plan.service_hz} requests/s on a fixed schedule (open loop: "
             f"latency counts from the scheduled time), {plan.service_touches} random pages and a fresh "
             f"{plan.service_alloc_kb} KiB buffer per request) and *batch* (`bench/batch.c`, phases "
             f"{', '.join(plan.phases)} as name:seconds:MiB swept). {plan.reps} repetitions, one boot each; in a "
             "boot each case runs `alone` (the service without the batch job, the reference) and then the four "
             "modes in an order rotated between repetitions, each in fresh cgroups.", "",
             f"- *priority*: the service is active {plan.active_s} s, idle {plan.idle_s} s. static: memory.low "
             f"{plan.protect_mb} MiB on the service. userspace controller (`bench/uctl.c`): memory.low "
             f"{plan.protect_mb} MiB while the service's pgfault count grew within {plan.idle_ms} ms, else 0; "
             f"PSI trigger plus {plan.uctl_period_ms} ms polling, one thread, files opened once. BPF: `priority` "
             f"with `cgroup_ids=/value/service idle_ms={plan.idle_ms}` (protects the service while it charges, "
             "spares it memory.high sleeps).",
             f"- *proactive*: the service runs all the time. static: as above. userspace controller: when "
             f"/value's usage is above {plan.proactive_percent} % of memory.max, write the excess (at least "
             f"{plan.proactive_batch_pages} pages) to memory.reclaim. BPF: `proactive percent="
             f"{plan.proactive_percent} batch_pages={plan.proactive_batch_pages}`.",
             f"- Cells: median over repetitions, (spread: (max - min) / median). SLO epochs: {plan.epoch_ms} ms "
             f"epochs whose p99 latency is above {SLO_US / 1e3:g} ms. Events, scans, refaults and PSI are the "
             "growth over the run (memory.events and memory.stat of /value, memory.pressure of the service); "
             "on 6.12 `pgscan_direct` also counts proactive reclaim (memory.reclaim writes and the reclaim "
             "the policy asks for), so the `high` events are the measure of charges that went over the limit. "
             "Service and batch CPU: their cgroups' cpu.stat usage, where reclaim done by their own tasks is "
             "charged (memory.high reclaim, and the reclaim the BPF policy asks for). Controller CPU: the "
             "userspace controller's user + system time (its memory.reclaim writes, so the reclaim it "
             "does, included), or the BPF programs' run time (kernel.bpf_stats_enabled, on in every mode), "
             "which does not include the reclaim they ask for: that is in the service and batch columns.",
             "- Timing: real time, because -icount ran one scenario of 16 s for over 10 minutes (the service's "
             "sleeps and the controller's timers are all virtual time then); TCG real time is noisy, hence the "
             "repetitions and the spreads.", ""]
    for case in CASES:
        g = gate(rows, case)
        status = ("valid" if g["valid"] else "**inconclusive**: " + ", ".join(
            w for w, ok in (("the parent never crossed memory.high", g["crossed_high"]),
                            (f"without a policy the service's p99 was not {HURT_FACTOR:g}x its p99 alone",
                             g["service_hurt"])) if not ok))
        alone, none = g["alone_p99_us"], g["none_p99_us"]
        lines += [f"### {case}", "",
                  f"Validity gate: {status} (p99 alone {alone / 1e3 if alone else 0:.1f} ms, kernel defaults "
                  f"{none / 1e3 if none else 0:.1f} ms).", ""]
        lines += table(rows, case)
        lines += [""] + verdict(rows, case)
        lines += reaction_lines(rows, case)
        lines.append("")
    lines += ["![value](results/value.png)", ""]
    return lines
