"""Turn bench/results/*.json into ratios, plots and REPORT.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

OVERHEAD_ORDER = ["baseline", "no-handler", "noop", "telemetry", "fentry", "kprobe"]
# (config, against, allowed relative increase in %) from the benchmark issue.
TARGETS = [("no-handler", "baseline", 0.1), ("noop", "no-handler", 0.5), ("telemetry", "no-handler", 1.0)]


def summary(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {"mean": mean, "min": min(values), "max": max(values), "n": len(values),
            "spread_pct": (max(values) - min(values)) / mean * 100 if mean else 0.0}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def overhead_table(data: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """regime -> config -> summary of ns/page."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for config in OVERHEAD_ORDER:
        result = data["configs"].get(config)
        if not result:
            continue
        for regime in ("headroom", "pressure"):
            table.setdefault(regime, {})[config] = summary(result[regime]["ns_per_page"])
    return table


def ratio_pct(table: dict[str, dict[str, float]], config: str, against: str) -> float:
    return (table[config]["mean"] / table[against]["mean"] - 1) * 100


def verdicts(table: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    out = []
    for regime, configs in table.items():
        for config, against, limit in TARGETS:
            if config in configs and against in configs:
                delta = ratio_pct(configs, config, against)
                out.append({"regime": regime, "config": config, "against": against, "delta_pct": delta,
                            "limit_pct": limit, "met": delta <= limit,
                            "noise_pct": max(configs[config]["spread_pct"], configs[against]["spread_pct"])})
        for tracer in ("fentry", "kprobe"):
            if "telemetry" in configs and tracer in configs:
                ours = configs["telemetry"]["mean"] - configs["no-handler"]["mean"]
                theirs = configs[tracer]["mean"] - configs["baseline"]["mean"]
                out.append({"regime": regime, "config": "telemetry", "against": tracer,
                            "delta_pct": ratio_pct(configs, "telemetry", tracer),
                            "noise_pct": max(configs["telemetry"]["spread_pct"], configs[tracer]["spread_pct"]),
                            "extra_ns_ours": ours, "extra_ns_theirs": theirs,
                            "met": configs["telemetry"]["mean"] < configs[tracer]["mean"]})
    return out


def reclaim_table(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """workload -> config -> throughput, latency and reclaim counters."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for config, result in data["configs"].items():
        for workload, all_runs in result["workloads"].items():
            runs = [r for r in all_runs if not r.get("oom_killed")]
            if not runs:
                continue
            mbps = [r["pages"] * 4096 / 2**20 / r["seconds"] for r in runs]
            bursts = [b for r in runs for b in r["burst_us"]]
            table.setdefault(workload, {})[config] = {
                "killed_runs": len(all_runs) - len(runs),
                "throughput": summary(mbps),
                "p50_us": percentile(bursts, 50), "p99_us": percentile(bursts, 99),
                "p99_per_run": [percentile(r["burst_us"], 99) for r in runs],
                "max_events": statistics.fmean(r["max_events"] for r in runs),
                "pgscan": statistics.fmean(r["pgscan"] for r in runs),
                "pgsteal": statistics.fmean(r["pgsteal"] for r in runs),
                "oom_kill": sum(r["oom_kill"] for r in all_runs),
            }
    return table


def target_of(config: str) -> int:
    return int(config.split("-")[1]) if config.startswith("boost-") else 0


def plot_overhead(table: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(5 * len(table), 3.6))
    for ax, (regime, configs) in zip(axes if len(table) > 1 else [axes], table.items()):
        names = list(configs)
        means = [configs[n]["mean"] for n in names]
        errs = [[configs[n]["mean"] - configs[n]["min"] for n in names],
                [configs[n]["max"] - configs[n]["mean"] for n in names]]
        ax.bar(names, means, yerr=errs, color=["#888", "#4a7", "#4a7", "#2a5", "#c63", "#c63"][:len(names)])
        ax.set_title(f"{regime}: guest ns per page (-icount; y from 97 %)")
        ax.tick_params(axis="x", rotation=30)
        low = min(means)
        ax.set_ylim(low * 0.97, max(means) * 1.01)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reclaim(table: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for workload, configs in table.items():
        names = sorted(configs, key=target_of)
        xs = [target_of(n) for n in names]
        left.errorbar(xs, [configs[n]["throughput"]["mean"] for n in names],
                      yerr=[[configs[n]["throughput"]["mean"] - configs[n]["throughput"]["min"] for n in names],
                            [configs[n]["throughput"]["max"] - configs[n]["throughput"]["mean"] for n in names]],
                      marker="o", capsize=3, label=workload)
        right.plot(xs, [configs[n]["p99_us"] for n in names], marker="o", label=workload)
    left.set_title("throughput (MiB/s)")
    right.set_title("p99 latency of a 256-page burst (us)")
    for ax in (left, right):
        ax.set_xlabel("reclaim target in pages (0 = no policy)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def render(out: Path) -> Path:
    """Write plots and REPORT.md from out/results/*.json; return the report path."""
    results = out / "results"
    overhead = json.loads((results / "overhead.json").read_text()) if (results / "overhead.json").exists() else None
    reclaim = json.loads((results / "reclaim.json").read_text()) if (results / "reclaim.json").exists() else None
    lines = ["# memcg-bpf benchmark report", "",
             "Generated by `memcg-bpf bench all` from `bench/results/*.json` (every run is in the JSON).", ""]
    meta = (overhead or reclaim or {}).get("meta", {})
    if meta:
        lines += ["## Method", "",
                  f"- Machine: {meta.get('cpus')} host CPUs, host kernel {meta.get('host')}; {meta.get('qemu')}, "
                  "TCG (no KVM). Guest: the project's test kernel "
                  f"(Linux {meta.get('kernel_version')}, `kernel_patch/qemu.config` with "
                  f"{', '.join(meta.get('config_overrides', []))}: no lock debugging), "
                  f"patched `{meta.get('patched_kernel')}` and baseline `{meta.get('baseline_kernel')}` "
                  "(the same config without the series).",
                  f"- Run on {meta.get('date')}{' in --quick mode (tiny sizes: not for conclusions)' if meta.get('quick') else ''}.",
                  "- Reproduce: `scripts/setup && memcg-bpf bench all` (writes `bench/results/`, the plots and this file).",
                  ""]
    if overhead:
        table = overhead_table(overhead)
        plan = overhead["plan"]
        plot_overhead(table, results / "overhead.png")
        lines += ["## 1. Overhead of the hook (instruction-exact)", "",
                  f"`bench/pagefault.c` maps {plan['overhead_mb']} MiB, writes one byte per 4 KiB page and unmaps it, "
                  f"{plan['repeat']} measured rounds after one warm-up, in a cgroup; one vCPU, "
                  "QEMU `-icount shift=0,sleep=off`, so guest time counts instructions (1 ns = 1 instruction). "
                  f"*headroom*: no limit, the hook runs only when the per-cpu stock is refilled; *pressure*: "
                  f"memory.max={plan['pressure_limit_mb']} MiB with swap on zram, the hook runs on every failed charge "
                  "and reclaim follows. fentry and kprobe run the telemetry policy's per-cgroup counting from "
                  "`bench/trace_count.bpf.c` on `try_charge_memcg()` on the *unpatched* kernel: what users can do today.",
                  ""]
        for regime, configs in table.items():
            lines += [f"### {regime}", "", "| configuration | ns/page (mean) | min | max | spread | vs baseline | vs no-handler |",
                      "|---|---|---|---|---|---|---|"]
            for name, s in configs.items():
                vs_base = f"{ratio_pct(configs, name, 'baseline'):+.3f} %" if "baseline" in configs else "-"
                vs_nh = f"{ratio_pct(configs, name, 'no-handler'):+.3f} %" if "no-handler" in configs else "-"
                lines.append(f"| {name} | {_fmt(s['mean'], 2)} | {_fmt(s['min'], 2)} | {_fmt(s['max'], 2)} | "
                             f"{s['spread_pct']:.3f} % | {vs_base} | {vs_nh} |")
            lines.append("")
        lines += per_run_costs(overhead, table)
        lines += ["### Targets", "", "| regime | check | result | target | met |", "|---|---|---|---|---|"]
        for v in verdicts(table):
            if "limit_pct" in v:
                lines.append(f"| {v['regime']} | {v['config']} vs {v['against']} | {v['delta_pct']:+.3f} % "
                             f"(spread {v['noise_pct']:.3f} %) | <= +{v['limit_pct']} % | "
                             f"{'yes' if v['met'] else '**no**'} |")
            else:
                lines.append(f"| {v['regime']} | telemetry vs {v['against']} | {v['delta_pct']:+.2f} % "
                             f"(extra ns/page: ours {v['extra_ns_ours']:.1f}, theirs {v['extra_ns_theirs']:.1f}) | "
                             f"telemetry cheaper | {'yes' if v['met'] else '**no**'} |")
        lines += ["", "![overhead](results/overhead.png)", ""]
        missed = [v for v in verdicts(table) if not v["met"]]
        lines.append("Targets missed: " + ("none." if not missed else ""))
        for v in missed:
            resolved = abs(v["delta_pct"]) > v["noise_pct"]
            why = ""
            result = overhead["configs"].get(v["config"], {}).get(v["regime"], {})
            if result.get("program_runs") and v["against"] in ("no-handler", "baseline"):
                pages = result["pages"] * result["rounds"]
                extra = table[v["regime"]][v["config"]]["mean"] - table[v["regime"]][v["against"]]["mean"]
                why = (f" Why: the program ran for {result['program_runs'] / pages * 1000:.0f} of every 1000 pages "
                       f"at {extra * pages / result['program_runs']:.0f} guest ns (instructions) per run; "
                       "under memory.max the per-cpu stock is drained, so most charges reach the hook.")
            lines.append(f"- {v['regime']}, {v['config']} vs {v['against']}: {v['delta_pct']:+.3f} %, "
                         + ("larger than the spread of the runs ({:.3f} %): a real cost.".format(v["noise_pct"])
                            if resolved else
                            "within the spread of the runs ({:.3f} %): not resolved by this many repetitions."
                            .format(v["noise_pct"])) + why)
        lines.append("")
    if reclaim:
        rtable = reclaim_table(reclaim)
        plan = reclaim["plan"]
        plot_reclaim(rtable, results / "reclaim.png")
        lines += ["## 2. Value of the writable reclaim target", "",
                  f"`bench/reclaimload.c` in a cgroup with memory.max={plan['reclaim_limit_mb']} MiB and swap on zram, "
                  f"2 vCPUs, real TCG time (no icount), {plan['repeat']} runs per point, a fresh cgroup per run. "
                  f"*sequential*: touch {plan['seq_mb']} MiB once; *random*: populate {plan['rand_mb']} MiB, then "
                  f"{plan['rand_touches']:,} random page touches. Latency is per burst of 256 touches, pooled over runs. "
                  "`max events` is memory.events `max` (charges that hit the limit, each followed by direct reclaim); "
                  "pgscan/pgsteal are from memory.stat.", ""]
        for workload, rconfigs in rtable.items():
            lines += [f"### {workload}", "",
                      "| reclaim target | MiB/s (mean) | spread | p50 us | p99 us | max events | pgscan | pgsteal | "
                      "oom kills (runs lost) |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for name in sorted(rconfigs, key=target_of):
                c = rconfigs[name]
                lines.append(f"| {target_of(name) or 'none'} | {_fmt(c['throughput']['mean'])} | "
                             f"{c['throughput']['spread_pct']:.1f} % | {_fmt(c['p50_us'])} | {_fmt(c['p99_us'])} | "
                             f"{_fmt(c['max_events'], 0)} | {_fmt(c['pgscan'], 0)} | {_fmt(c['pgsteal'], 0)} | "
                             f"{c['oom_kill']} ({c['killed_runs']}) |")
            lines.append("")
        lines += ["![reclaim](results/reclaim.png)", "", "### What the data says", ""]
        lines += reclaim_findings(rtable)
        lines.append("")
    report = out / "REPORT.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def reclaim_findings(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per workload and target: the change against no policy, and whether it exceeds the noise."""
    out = []
    for workload, configs in table.items():
        base = configs.get("none")
        if not base:
            continue
        for name in sorted(configs, key=target_of):
            if name == "none":
                continue
            c = configs[name]
            delta = (c["throughput"]["mean"] / base["throughput"]["mean"] - 1) * 100
            noise = max(c["throughput"]["spread_pct"], base["throughput"]["spread_pct"])
            verdict = "within the run-to-run spread: no measurable effect" if abs(delta) <= noise else (
                "faster" if delta > 0 else "slower")
            p99 = (c["p99_us"] / base["p99_us"] - 1) * 100 if base["p99_us"] else float("nan")
            events = (c["max_events"] / base["max_events"] - 1) * 100 if base["max_events"] else float("nan")
            out.append(f"- {workload}, target {target_of(name)}: throughput {delta:+.1f} % (spread {noise:.1f} %, "
                       f"{verdict}); p99 {p99:+.1f} %; direct-reclaim entries {events:+.1f} %.")
    return out


def per_run_costs(overhead: dict[str, Any], table: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Why the numbers are what they are: program runs per page and guest ns per run."""
    lines = ["### Cost per program run", "",
             "Runs counted by the programs themselves during the measured regime (warm-up round included); "
             "extra ns/page against the kernel the configuration ran on (no-handler for memcg_ops policies, "
             "baseline for fentry/kprobe), times pages per run.", "",
             "| regime | configuration | runs per 1000 pages | extra ns/page | guest ns per run |",
             "|---|---|---|---|---|"]
    reference = {"telemetry": "no-handler", "fentry": "baseline", "kprobe": "baseline"}
    rows = 0
    for regime, configs in table.items():
        for name, against in reference.items():
            result = overhead["configs"].get(name, {}).get(regime, {})
            runs = result.get("program_runs")
            if not runs or name not in configs or against not in configs:
                continue
            pages = result["pages"] * result["rounds"]
            extra = configs[name]["mean"] - configs[against]["mean"]
            lines.append(f"| {regime} | {name} | {runs / pages * 1000:.1f} | {extra:.1f} | "
                         f"{extra * pages / runs:.0f} |")
            rows += 1
    return lines + [""] if rows else []
