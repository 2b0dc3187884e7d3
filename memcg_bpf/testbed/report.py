"""Turn bench/results/*.json into ratios, plots and REPORT.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

OVERHEAD_ORDER = ["baseline", "no-handler", "noop", "noop-elsewhere", "telemetry", "fentry", "kprobe"]
# (config, against, allowed relative increase in %) from the benchmark issue.
# noop-elsewhere: a policy is attached, but to another subtree; the measured cgroup has none, so it
# should cost what no policy costs.
TARGETS = [("no-handler", "baseline", 0.1), ("noop", "no-handler", 0.5), ("noop-elsewhere", "no-handler", 0.1),
           ("telemetry", "no-handler", 1.0)]


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


PATH_TEXT = {
    "anon": "anonymous page faults (ns per 4 KiB page)",
    "shmem": "write(2) into a tmpfs file (ns per 4 KiB page)",
    "kmem": "create and unlink an empty tmpfs file: accounted slab (ns per file)",
}
REGIMES = ("headroom", "pressure")


def boot_summary(boot_means: list[float], rounds: list[list[float]]) -> dict[str, Any]:
    """Across boots: the median of the per-boot means, the boot-to-boot spread, the worst in-boot spread."""
    median = statistics.median(boot_means)
    in_boot = max(summary(r)["spread_pct"] for r in rounds)
    return {"median": median, "min": min(boot_means), "max": max(boot_means), "boots": len(boot_means),
            "boot_spread_pct": (max(boot_means) - min(boot_means)) / median * 100 if median else 0.0,
            "in_boot_spread_pct": in_boot, "boot_means": boot_means}


def overhead_table(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(path, regime) -> config -> boot summary of ns per unit."""
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for config in OVERHEAD_ORDER:
        result = data["configs"].get(config)
        if not result:
            continue
        for path in data["plan"]["paths"]:
            for regime in REGIMES:
                rounds = [boot["paths"][path][regime]["ns_per_unit"] for boot in result["boots"]]
                table.setdefault((path, regime), {})[config] = boot_summary(
                    [statistics.fmean(r) for r in rounds], rounds)
    return table


def ratio_pct(configs: dict[str, dict[str, Any]], config: str, against: str) -> float:
    return (configs[config]["median"] / configs[against]["median"] - 1) * 100


def noise_pct(configs: dict[str, dict[str, Any]], *names: str) -> float:
    """What the measurement cannot resolve: the largest boot-to-boot or in-boot (round-to-round) spread."""
    return max(max(configs[n]["boot_spread_pct"], configs[n]["in_boot_spread_pct"]) for n in names)


def verdicts(table: dict[tuple[str, str], dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for (path, regime), configs in table.items():
        for config, against, limit in TARGETS:
            if config in configs and against in configs:
                delta = ratio_pct(configs, config, against)
                out.append({"path": path, "regime": regime, "config": config, "against": against,
                            "delta_pct": delta, "limit_pct": limit, "met": delta <= limit,
                            "noise_pct": noise_pct(configs, config, against)})
        for tracer in ("fentry", "kprobe"):
            if {"telemetry", "no-handler", "baseline", tracer} <= set(configs):
                ours = configs["telemetry"]["median"] - configs["no-handler"]["median"]
                theirs = configs[tracer]["median"] - configs["baseline"]["median"]
                out.append({"path": path, "regime": regime, "config": "telemetry", "against": tracer,
                            "delta_pct": ratio_pct(configs, "telemetry", tracer),
                            "noise_pct": noise_pct(configs, "telemetry", tracer),
                            "extra_ns_ours": ours, "extra_ns_theirs": theirs,
                            "met": configs["telemetry"]["median"] < configs[tracer]["median"]})
    return out


def program_runs(data: dict[str, Any], config: str, path: str, regime: str) -> tuple[int, int] | None:
    """(program runs, units charged) summed over boots, warm-up rounds included; None without a counter."""
    boots = data["configs"].get(config, {}).get("boots", [])
    results = [boot["paths"][path][regime] for boot in boots]
    if not results or any(r.get("program_runs") is None for r in results):
        return None
    return (sum(r["program_runs"] for r in results), sum(r["units"] * r["rounds"] for r in results))


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


def plot_overhead(table: dict[tuple[str, str], dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = list(dict.fromkeys(p for p, _ in table))
    fig, axes = plt.subplots(len(paths), len(REGIMES), figsize=(10, 3.2 * len(paths)), squeeze=False)
    for row, charge_path in enumerate(paths):
        for col, regime in enumerate(REGIMES):
            ax = axes[row][col]
            configs = table[(charge_path, regime)]
            names = list(configs)
            medians = [configs[n]["median"] for n in names]
            errs = [[configs[n]["median"] - configs[n]["min"] for n in names],
                    [configs[n]["max"] - configs[n]["median"] for n in names]]
            ax.bar(names, medians, yerr=errs, color=["#888", "#4a7", "#4a7", "#2a5", "#c63", "#c63"][:len(names)])
            ax.set_title(f"{charge_path}, {regime}: guest ns per unit (y from 97 %)", fontsize=9)
            ax.tick_params(axis="x", rotation=30, labelsize=8)
            ax.set_ylim(min(medians) * 0.97, max(medians) * 1.01)
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
    value = json.loads((results / "value.json").read_text()) if (results / "value.json").exists() else None
    lines = ["# memcg-bpf benchmark report", "",
             "Generated by `memcg-bpf bench all` from `bench/results/*.json` (every run is in the JSON).", ""]
    meta = (overhead or reclaim or value or {}).get("meta", {})
    if meta:
        lines += ["## Method", "",
                  f"- Machine: {meta.get('cpus')} host CPUs, host kernel {meta.get('host')}; {meta.get('qemu')}, "
                  "TCG (no KVM). Guest: the project's test kernel "
                  f"(Linux {meta.get('kernel_version')}, `kernel_patch/qemu.config` with "
                  f"{', '.join(meta.get('config_overrides', [])) or 'nothing changed (lock debugging on)'}), "
                  f"patched `{meta.get('patched_kernel')}` and baseline `{meta.get('baseline_kernel')}` "
                  "(the same config without the series).",
                  f"- Run on {meta.get('date')}{' in --quick mode (tiny sizes: not for conclusions)' if meta.get('quick') else ''}.",
                  "- Reproduce: `scripts/setup && memcg-bpf bench all` (writes `bench/results/`, the plots and this file).",
                  ""]
    if overhead:
        lines += overhead_section(overhead, results)
    if reclaim:
        rtable = reclaim_table(reclaim)
        plan = reclaim["plan"]
        plot_reclaim(rtable, results / "reclaim.png")
        lines += ["## 2. Value of the writable reclaim target", "",
                  f"`bench/reclaimload.c` in a cgroup with memory.max={plan['reclaim_limit_mb']} MiB and swap on zram, "
                  f"{vcpus(reclaim)}, real TCG time (no icount), {threading(reclaim['meta'])}, "
                  f"{plan['repeat']} runs per point, a fresh cgroup per run. "
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
    if value:
        from memcg_bpf.testbed.value_report import section
        lines += section(value, results)
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


def threading(meta: dict[str, Any]) -> str:
    """How QEMU ran the vCPUs of a real-time benchmark, and how many guests its bug cost."""
    if meta.get("tcg_thread_real_time") != "multi":
        return "the vCPUs interleaved on one host thread (`--tcg-thread single`)"
    crashes = meta.get("qemu_crashes_rebooted", 0)
    return ("one host thread per vCPU (`--tcg-thread multi`), so they run in parallel; "
            + (f"{crashes} guest(s) died of QEMU 7.2's multi-threaded TCG int3 crash (see README) and were "
               "booted again" if crashes else "no guest hit QEMU 7.2's multi-threaded TCG crash"))


def vcpus(data: dict[str, Any]) -> str:
    """How many CPUs the guests had, as they reported it."""
    seen = sorted({run["online_cpus"] for c in data["configs"].values()
                   for run in c.get("boots", [c])})
    return " or ".join(str(n) for n in seen) + (" vCPU" if seen == [1] else " vCPUs") + " (counted in the guest)"


def overhead_section(overhead: dict[str, Any], results: Path) -> list[str]:
    table = overhead_table(overhead)
    plan = overhead["plan"]
    plot_overhead(table, results / "overhead.png")
    cfg = overhead.get("meta", {}).get("kernel_config", {})
    lines = ["## 1. Overhead of the hook (instruction-exact)", "",
             "`bench/chargepath.c` measures three charge paths in a cgroup, "
             f"{plan['repeat']} measured rounds after one warm-up, on {vcpus(overhead)} under QEMU "
             "`-icount shift=0,sleep=off`, "
             "so guest time counts instructions (1 ns = 1 instruction):", ""]
    for name, spec in plan["paths"].items():
        size = f"{spec['size']} MiB" if name != "kmem" else f"{spec['size']} files"
        balloon = (f", {spec['balloon_mb']} MiB of anonymous memory touched and marked cold "
                   "(MADV_COLD) before each round") if spec["balloon_mb"] else ""
        lines.append(f"- *{name}*: {PATH_TEXT.get(name, name)}, {size} per round; pressure: "
                     f"memory.max={spec['pressure_limit_mb']} MiB{balloon}.")
    lines += ["",
              "*headroom*: no limit, the hook runs only when a per-cpu stock is refilled; *pressure*: the limit "
              "is below what the round charges, with swap on zram, so charges fail and reclaim follows. "
              f"Each configuration ran in {plan['boots']} boots with `{overhead.get('meta', {}).get('guest_cmdline', '')}` "
              "(no kernel or user address-layout randomness) and without the host's RDRAND/RDSEED (no host "
              "entropy): icount is exact within a boot, but what differs between boots still moves some paths, "
              "so the numbers below are the median of the per-boot means, with the boot-to-boot spread "
              "((max - min) / median of the boot means) next to every ratio. "
              "*no-handler*: the patched kernel with no policy attached; *noop*, *telemetry*: that policy "
              "attached at the root, so it governs the measured cgroup; *noop-elsewhere*: noop attached to a "
              "cgroup of its own (`/bench-elsewhere`), so the hook's static key is on but the measured cgroup is "
              "outside every attached subtree (the cost of the walk up from the charged cgroup). "
              "fentry and kprobe run the telemetry policy's per-cgroup counting from `bench/trace_count.bpf.c` on "
              "`try_charge_memcg()` on the *unpatched* kernel: what users can do today.", "",
              "Kernel config of the measured kernels: "
              + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ".", ""]
    for (charge_path, regime), configs in table.items():
        lines += [f"### {charge_path}, {regime}", "",
                  "| configuration | ns/unit (median of boots) | boot means | boot spread | in-boot spread | "
                  "vs baseline | vs no-handler |", "|---|---|---|---|---|---|---|"]
        for name, s in configs.items():
            vs_base = f"{ratio_pct(configs, name, 'baseline'):+.3f} %" if "baseline" in configs else "-"
            vs_nh = f"{ratio_pct(configs, name, 'no-handler'):+.3f} %" if "no-handler" in configs else "-"
            means = " / ".join(_fmt(m, 1) for m in s["boot_means"])
            lines.append(f"| {name} | {_fmt(s['median'], 2)} | {means} | {s['boot_spread_pct']:.3f} % | "
                         f"{s['in_boot_spread_pct']:.3f} % | {vs_base} | {vs_nh} |")
        lines.append("")
    lines += per_run_costs(overhead, table)
    lines += ["### Targets", "",
              "Noise, in brackets: the largest boot-to-boot or in-boot spread of the two configurations compared; "
              "a difference within it is not resolved by this measurement.", "",
              "| path | regime | check | result (noise) | target | met |",
              "|---|---|---|---|---|---|"]
    checks = verdicts(table)
    for v in checks:
        if "limit_pct" in v:
            lines.append(f"| {v['path']} | {v['regime']} | {v['config']} vs {v['against']} | "
                         f"{v['delta_pct']:+.3f} % ({v['noise_pct']:.3f} %) | <= +{v['limit_pct']} % | "
                         f"{'yes' if v['met'] else '**no**'} |")
        else:
            lines.append(f"| {v['path']} | {v['regime']} | telemetry vs {v['against']} | {v['delta_pct']:+.2f} % "
                         f"(extra ns/unit: ours {v['extra_ns_ours']:.1f}, theirs {v['extra_ns_theirs']:.1f}) | "
                         f"telemetry cheaper | {'yes' if v['met'] else '**no**'} |")
    lines += ["", "![overhead](results/overhead.png)", ""]
    missed = [v for v in checks if not v["met"]]
    lines.append("Targets missed: " + ("none." if not missed else ""))
    for v in missed:
        resolved = abs(v["delta_pct"]) > v["noise_pct"]
        why = explain(overhead, table, v) if resolved else ""
        lines.append(f"- {v['path']}, {v['regime']}, {v['config']} vs {v['against']}: {v['delta_pct']:+.3f} %, "
                     + (f"larger than the noise ({v['noise_pct']:.3f} %): a real cost."
                        if resolved else
                        f"within the noise ({v['noise_pct']:.3f} %): not resolved.") + why)
    lines.append("")
    return lines


def explain(overhead: dict[str, Any], table: dict[tuple[str, str], dict[str, dict[str, Any]]],
            v: dict[str, Any]) -> str:
    """Why a resolved miss costs what it does: calls per unit times guest ns per call."""
    if v["against"] not in ("no-handler", "baseline"):
        return ""
    # noop counts nothing; the hook runs as often under telemetry, on the same path and regime.
    counted = program_runs(overhead, "telemetry" if v["config"] == "noop" else v["config"], v["path"], v["regime"])
    if not counted or not counted[0]:
        return ""
    runs, units = counted
    configs = table[(v["path"], v["regime"])]
    per_run = (configs[v["config"]]["median"] - configs[v["against"]]["median"]) * units / runs
    text = (f" Why: the hook ran for {runs / units * 1000:.0f} of every 1000 units "
            f"at {per_run:.0f} guest ns (instructions) per call")
    tracer = program_runs(overhead, "fentry", v["path"], v["regime"])
    if v["config"] == "noop" and tracer and tracer[0] and "fentry" in configs:
        fentry = (configs["fentry"]["median"] - configs["baseline"]["median"]) * tracer[1] / tracer[0]
        text += (f" with an empty handler, about what an fentry program with the telemetry counting costs per "
                 f"run on this path ({fentry:.0f}): the price of calling any BPF program through a trampoline "
                 f"here, not of what the program does")
    return text + "."


def per_run_costs(overhead: dict[str, Any], table: dict[tuple[str, str], dict[str, dict[str, Any]]]) -> list[str]:
    """Why the numbers are what they are: program runs per unit and guest ns per run."""
    lines = ["### Cost per program run", "",
             "Runs counted by the programs themselves (warm-up rounds included, all boots); extra ns/unit against "
             "the kernel the configuration ran on (no-handler for memcg_ops policies, baseline for fentry/kprobe), "
             "times units per run.", "",
             "| path | regime | configuration | runs per 1000 units | extra ns/unit | guest ns per run |",
             "|---|---|---|---|---|---|"]
    reference = {"telemetry": "no-handler", "fentry": "baseline", "kprobe": "baseline"}
    rows = 0
    for (charge_path, regime), configs in table.items():
        for name, against in reference.items():
            counted = program_runs(overhead, name, charge_path, regime)
            if not counted or not counted[0] or name not in configs or against not in configs:
                continue
            runs, units = counted
            extra = configs[name]["median"] - configs[against]["median"]
            lines.append(f"| {charge_path} | {regime} | {name} | {runs / units * 1000:.1f} | {extra:.1f} | "
                         f"{extra * units / runs:.0f} |")
            rows += 1
    return lines + [""] if rows else []
