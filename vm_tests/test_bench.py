"""The benchmark runs end to end in --quick mode, so it cannot rot (the full run is not part of CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from memcg_bpf.kernel.build import Artifacts
from memcg_bpf.paths import REPO_ROOT


def test_bench_quick_writes_results_plots_and_report(kernel: Artifacts, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", "bench", "all", "--quick", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=3600,
                          env={**os.environ, "MEMCG_BPF_LIBBPF": str(kernel.libbpf)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "overhead: 6/6 kprobe" in proc.stderr, "no progress output"
    overhead = json.loads((tmp_path / "results" / "overhead.json").read_text())
    assert list(overhead["configs"]) == ["baseline", "no-handler", "noop", "telemetry", "fentry", "kprobe"]
    for name, result in overhead["configs"].items():
        for regime in ("headroom", "pressure"):
            assert len(result[regime]["ns_per_page"]) == 3, name
            assert all(v > 0 for v in result[regime]["ns_per_page"]), name
    assert overhead["configs"]["telemetry"]["pressure"]["max_events"] > 0, "the pressure regime hit no limit"
    assert overhead["configs"]["telemetry"]["headroom"]["max_events"] == 0
    for name in ("telemetry", "fentry", "kprobe"):
        for regime in ("headroom", "pressure"):
            assert overhead["configs"][name][regime]["program_runs"] > 0, (name, regime)
    assert overhead["configs"]["noop"]["headroom"]["program_runs"] is None  # noop counts nothing
    # A program on try_charge_memcg() runs on every charge, the memcg_ops hook only past the per-cpu stock.
    assert (overhead["configs"]["fentry"]["headroom"]["program_runs"]
            > overhead["configs"]["telemetry"]["headroom"]["program_runs"])
    reclaim = json.loads((tmp_path / "results" / "reclaim.json").read_text())
    assert list(reclaim["configs"]) == ["none", "boost-256"]
    for result in reclaim["configs"].values():
        for runs in result["workloads"].values():
            assert runs and all(r["seconds"] > 0 and r["max_events"] > 0 for r in runs)
    for png in ("overhead.png", "reclaim.png"):
        assert (tmp_path / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "REPORT.md").read_text()
    assert "## 1. Overhead of the hook" in report and "## 2. Value of the writable reclaim target" in report
    assert "| headroom | telemetry vs fentry |" in report
    assert "### Cost per program run" in report
