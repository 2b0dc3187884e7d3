"""bench value's host side: run order, per-run numbers, the validity gate and the verdicts (synthetic runs)."""

from __future__ import annotations

import json
from typing import Any

from memcg_bpf.testbed.value import FULL_VALUE, QUICK_VALUE, gate, summarize
from memcg_bpf.testbed.value_report import table, verdict


def test_each_repetition_runs_alone_first_then_every_mode_in_a_rotated_order() -> None:
    orders = []
    for rep in range(4):
        runs = FULL_VALUE.runs(rep)
        assert [c for c, _ in runs] == ["priority"] * 5 + ["proactive"] * 5
        assert runs[0] == ["priority", "alone"] and runs[5] == ["proactive", "alone"]
        orders.append(tuple(m for c, m in runs[1:5]))
    assert len(set(orders)) == 4 and all(sorted(o) == sorted(orders[0]) for o in orders)
    # Every mode takes every position once over four repetitions.
    assert all(len({o[pos] for o in orders}) == 4 for pos in range(4))


def test_plans_give_the_guest_what_it_needs() -> None:
    for plan in (FULL_VALUE, QUICK_VALUE):
        cases = plan.cases("/value/service")
        assert plan.high_mb < plan.max_mb and plan.protect_mb < plan.high_mb
        assert cases["priority"]["policy"][:1] == ["priority"] and cases["proactive"]["policy"][:1] == ["proactive"]
        # The service runs as long as the batch job's phases.
        assert float(cases["priority"]["service_args"][3]) == plan.seconds
        assert cases["priority"]["uctl_args"][1] == "/sys/fs/cgroup/value/service"


def sample(high: int, some: int, scans: int) -> dict[str, Any]:
    group = {"events": {"high": high, "max": 0, "oom": 0, "oom_kill": 0}, "pressure": {"some": some, "full": 0},
             "stat": {"pgscan_direct": scans, "workingset_refault_anon": 0}, "cpu_usec": some, "current": 0}
    return {"t": 0.0, "value": group, "service": group, "batch": group}


def run(case: str, mode: str, latency_ms: float, high: int, pages: int = 1000) -> dict[str, Any]:
    lat = [latency_ms * 1e3] * 100
    r: dict[str, Any] = {"case": case, "mode": mode, "start_monotonic": 0.0,
                         "service": {"requests": 100, "at_ms": [i * 10.0 for i in range(100)], "latency_us": lat},
                         "samples": [sample(0, 0, 0), sample(high, 5000, 40)]}
    if mode != "alone":
        r["batch"] = {"pages": [pages, pages]}
    if mode == "uctl":
        r["uctl"] = {"cpu_user_us": 300, "cpu_system_us": 700, "writes": 4, "write_at": [4.5, 8.2]}
    if mode == "bpf":
        r["programs"] = {"run_cnt": 50, "run_time_ns": 20000}
    return r


def test_summary_of_a_run() -> None:
    s = summarize(run("priority", "uctl", 80, high=7), FULL_VALUE)
    assert (s["p50_us"], s["p99_us"], s["high_events"], s["pgscan_direct"]) == (80000, 80000, 7, 40)
    assert s["slo_epochs"] == s["epochs"] == 5          # 80 ms > the 50 ms SLO in every 200 ms epoch
    assert s["controller_cpu_us"] == 1000 and s["controller_writes"] == 4
    assert round(s["reaction_ms"]) == 200             # active again at 8 s (4 on, 4 off): next write 8.2 s
    assert s["batch_mb_s"] == 2000 * 4096 / 2**20 / FULL_VALUE.seconds
    bpf = summarize(run("proactive", "bpf", 2, high=0), FULL_VALUE)
    assert bpf["controller_cpu_us"] == 20 and bpf["slo_epochs"] == 0 and bpf["reaction_ms"] is None


def test_the_policys_reaction_is_its_switch_to_active_after_the_phase_start() -> None:
    # The run started at monotonic 100 s; the service is active again at 8 s; the policy saw its
    # first charge 3 ms later (activated_ns is CLOCK_MONOTONIC, as the runner's start).
    r = run("priority", "bpf", 2, high=0)
    r["start_monotonic"] = 100.0
    row = {"key": {"path": "/value/service"}, "value": {"protected": 9, "activated_ns": 108_003_000_000}}
    r["stats"] = {"rc": 0, "stdout": json.dumps({"maps": {"cgroups": [row]}}), "stderr": ""}
    assert round(summarize(r, FULL_VALUE)["reaction_ms"], 3) == 3.0
    # An activation before any phase start (the service's start) says nothing; no stats, no number.
    row["value"]["activated_ns"] = 100_001_000_000
    r["stats"]["stdout"] = json.dumps({"maps": {"cgroups": [row]}})
    assert summarize(r, FULL_VALUE)["reaction_ms"] is None
    r["stats"] = {"rc": 1, "stdout": "", "stderr": "not loaded"}
    assert summarize(r, FULL_VALUE)["reaction_ms"] is None


def test_the_gate_needs_memory_high_crossed_and_the_service_hurt() -> None:
    rows = [summarize(run("priority", "alone", 2, 0), FULL_VALUE),
            summarize(run("priority", "none", 10, 3), FULL_VALUE)]
    assert gate(rows, "priority")["valid"]
    mild = [rows[0], summarize(run("priority", "none", 3, 3), FULL_VALUE)]
    assert not gate(mild, "priority")["valid"] and not gate(mild, "priority")["service_hurt"]
    calm = [rows[0], summarize(run("priority", "none", 10, 0), FULL_VALUE)]
    assert not gate(calm, "priority")["crossed_high"]


def test_verdicts_call_overlapping_ranges_equivalent() -> None:
    rows = [{**summarize(run("priority", mode, ms, 3, pages), FULL_VALUE)}
            for mode, ms, pages in (("none", 10, 1000), ("none", 12, 1000), ("uctl", 3, 1000), ("uctl", 4, 1000),
                                    ("bpf", 3.5, 1000), ("bpf", 2, 1000))]
    lines = verdict(rows, "priority")
    assert lines[0].startswith("- BPF against kernel defaults: service p99 -") and "(better)" in lines[0]
    assert "service p99" in lines[1] and "equivalent (ranges overlap)" in lines[1]
    assert [line.split("|")[1].strip() for line in table(rows, "priority")[2:]] == [
        "kernel defaults", "userspace controller", "BPF policy"]
