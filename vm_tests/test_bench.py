"""The benchmark runs end to end in --quick mode, so it cannot rot (the full run is not part of CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.testbed.kernel.build import Artifacts
from memcg_bpf.testbed.value import QUICK_VALUE, summarize
from memcg_bpf.paths import REPO_ROOT


@pytest.mark.slow  # builds the baseline kernel (without the series), about 9.5 minutes on a cold cache
def test_bench_quick_writes_results_plots_and_report(kernel: Artifacts, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "bench", "all", "--quick", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=3600,
                          env={**os.environ, "MEMCG_BPF_LIBBPF": str(kernel.libbpf)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "overhead: 7/7 kprobe, boot 2/2" in proc.stderr, "no progress output"
    overhead = json.loads((tmp_path / "results" / "overhead.json").read_text())
    assert list(overhead["configs"]) == ["baseline", "no-handler", "noop", "noop-elsewhere", "telemetry", "fentry",
                                         "kprobe"]
    # --quick runs on the test kernels (lock debugging on); the full run on the bench variant.
    assert overhead["meta"]["kernel_variant"] == "test"
    assert overhead["meta"]["kernel_config"]["CONFIG_JUMP_LABEL"] == "y"
    assert overhead["meta"]["kernel_config"]["CONFIG_PROVE_LOCKING"] == "y"
    paths = ("anon", "shmem", "kmem")

    def regime(config: str, boot: int, path: str, name: str) -> dict:
        return overhead["configs"][config]["boots"][boot]["paths"][path][name]

    for name, result in overhead["configs"].items():
        assert len(result["boots"]) == 2, name
        for boot in result["boots"]:
            assert boot["online_cpus"] == 1
            assert set(boot["paths"]) == set(paths)
            for path in paths:
                for name_ in ("headroom", "pressure"):
                    values = boot["paths"][path][name_]["ns_per_unit"]
                    assert len(values) == 3 and all(v > 0 for v in values), (name, path, name_)
    for path in paths:
        # The pressure regime hits its limit on every path, the headroom regime never.
        assert regime("telemetry", 0, path, "pressure")["max_events"] > 0, path
        assert regime("telemetry", 0, path, "headroom")["max_events"] == 0, path
        for name in ("telemetry", "fentry", "kprobe"):
            for name_ in ("headroom", "pressure"):
                assert regime(name, 0, path, name_)["program_runs"] > 0, (name, path, name_)
        assert regime("noop", 0, path, "headroom")["program_runs"] is None  # noop counts nothing
    # A program on try_charge_memcg() runs on every charge, the memcg_ops hook only past the per-cpu stock.
    assert regime("fentry", 0, "anon", "headroom")["program_runs"] > regime("telemetry", 0, "anon", "headroom")[
        "program_runs"]
    reclaim = json.loads((tmp_path / "results" / "reclaim.json").read_text())
    assert list(reclaim["configs"]) == ["none", "boost-256"]
    for result in reclaim["configs"].values():
        assert result["online_cpus"] == 2, "the reclaim benchmark must run on 2 real vCPUs"
        for runs in result["workloads"].values():
            assert runs and all(r["seconds"] > 0 and r["max_events"] > 0 for r in runs)
    value = json.loads((tmp_path / "results" / "value.json").read_text())
    assert "value: repetition 1/1" in proc.stderr
    [boot] = value["boots"]
    assert [[r["case"], r["mode"]] for r in boot] == QUICK_VALUE.runs(0)
    for r in boot:
        assert r["online_cpus"] == 2, "the value benchmark must run on 2 real vCPUs"
        assert r["service"]["requests"] > 0 and len(r["samples"]) > 1, r["mode"]
        assert ("batch" in r) == (r["mode"] != "alone")
        if r["mode"] == "bpf":
            assert r["load"]["rc"] == 0 and r["unload"]["rc"] == 0, r["load"]
            assert r["programs"]["run_cnt"] > 0, "the policy never ran"
        if r["mode"] == "bpf" and r["case"] == "priority":
            # Active at the start and again after its idle phase (1 s, over idle_ms): two switches,
            # the second one's time is the policy's reaction.
            [row] = json.loads(r["stats"]["stdout"])["maps"]["cgroups"]
            assert row["value"]["activations"] >= 2, row
            assert summarize(r, QUICK_VALUE)["reaction_ms"] is not None, row
        if r["mode"] == "uctl":
            assert r["uctl"]["wakeups_period"] + r["uctl"]["wakeups_psi"] > 0
    for png in ("overhead.png", "reclaim.png", "value.png"):
        assert (tmp_path / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "REPORT.md").read_text()
    assert "## 1. Overhead of the hook" in report and "## 2. Value of the writable reclaim target" in report
    assert "| anon | headroom | telemetry vs fentry |" in report
    assert "| kmem | pressure | no-handler vs baseline |" in report
    assert "| anon | pressure | noop-elsewhere vs no-handler |" in report
    assert "boot spread" in report
    assert "### Cost per program run" in report
    assert "## 3. Value: BPF policies against" in report and "### proactive" in report
    assert "Validity gate: " in report and "| userspace controller |" in report
