"""The test-time budget's order and skip rule (vm_tests/budget.py), and its run in a real pytest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from vm_tests.budget import DEFAULT_HOST_SECONDS, DEFAULT_SECONDS, DEFAULT_SLOW_SECONDS, expected, order, read_history, skip_reason

REPO = Path(__file__).resolve().parent.parent


def test_expected_is_last_duration_here_or_a_default() -> None:
    history = {"a.py::t": 12.5}
    assert expected("a.py::t", False, history) == 12.5
    assert expected("a.py::u", False, history) == DEFAULT_SECONDS
    assert expected("a.py::u", True, history) == DEFAULT_SLOW_SECONDS
    assert expected("tests/a.py::u", False, history) == DEFAULT_HOST_SECONDS
    assert expected("tests/a.py::u", True, history) == DEFAULT_SLOW_SECONDS
    # After the first slow test of a module built what the module needs, the others are ordinary.
    assert expected("a.py::u", True, history, group_started=True) == DEFAULT_SECONDS


def test_order_cheapest_module_first_slow_last_modules_together() -> None:
    tests = [("big.py::a", False), ("big.py::b", False), ("slow.py::s", True),
             ("small.py::a", False), ("big.py::c", True), ("small.py::b", False)]
    history: dict[str, float] = {"big.py::a": 300, "big.py::b": 200, "small.py::a": 5, "small.py::b": 5,
               "slow.py::s": 60, "big.py::c": 30}
    ordered = [tests[i][0] for i in order(tests, history)]
    assert ordered == ["small.py::a", "small.py::b", "big.py::a", "big.py::b", "big.py::c", "slow.py::s"]


def test_skip_only_what_does_not_fit_and_say_how_to_run_it() -> None:
    assert skip_reason("m.py::t", left=600, needs=599, ran_before=True) is None
    reason = skip_reason("m.py::t", left=60, needs=300, ran_before=True)
    assert reason is not None
    assert "1.0 min left" in reason and "took 5.0 min" in reason
    assert "-m pytest m.py::t" in reason and "MEMCG_BPF_TEST_BUDGET=0" in reason
    assert "may take" in (skip_reason("m.py::t", left=-5, needs=1, ran_before=False) or "")


def test_a_damaged_history_is_ignored(tmp_path: Path) -> None:
    bad = tmp_path / "h.json"
    bad.write_text("{not json")
    assert read_history(bad) == {}
    bad.write_text(json.dumps({"a": 1, "b": "x"}))
    assert read_history(bad) == {"a": 1.0}


def test_in_pytest_a_test_past_the_deadline_is_skipped_and_durations_are_kept(tmp_path: Path) -> None:
    (tmp_path / "test_demo.py").write_text(
        "import time\n"
        "def test_quick():\n    time.sleep(0.2)\n"
        "def test_other():\n    pass\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "MEMCG_BPF_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    env.pop("MEMCG_BPF_TEST_DEADLINE", None)
    run = [sys.executable, "-m", "pytest", "-p", "vm_tests.budget", "-q", "-rs", "-p", "no:cacheprovider",
           str(tmp_path / "test_demo.py")]
    first = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0 and "2 passed" in first.stdout, first.stdout + first.stderr
    history = json.loads((cache / "test-durations.json").read_text())
    assert history[next(k for k in history if k.endswith("test_quick"))] >= 0.2
    # 60 s left: both fit by what they took. Already past: both are skipped, with the reason.
    env["MEMCG_BPF_TEST_DEADLINE"] = str(time.time() + 60)
    fits = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert "2 passed" in fits.stdout and "every selected test ran" in fits.stdout, fits.stdout
    env["MEMCG_BPF_TEST_DEADLINE"] = str(time.time() - 1)
    late = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert late.returncode == 0 and "2 skipped" in late.stdout, late.stdout
    assert "time budget: 0.0 min left" in late.stdout and "2 test(s) not started" in late.stdout
    env["MEMCG_BPF_TEST_DEADLINE"] = "soon"
    bad = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "is not a number of seconds since the epoch" in bad.stderr


def run_budgeted(tmp_path: Path, module: str, history: dict[str, float], seconds_left: float,
                 **env: str) -> subprocess.CompletedProcess[str]:
    """pytest with the budget plugin on tmp_path/MODULE, this history, and the deadline SECONDS_LEFT away."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "test-durations.json").write_text(json.dumps(history))
    full_env = {**os.environ, "MEMCG_BPF_CACHE": str(cache), "PYTHONPATH": str(REPO),
                "MEMCG_BPF_TEST_DEADLINE": str(time.time() + seconds_left), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "vm_tests.budget", "-q", "-rs", "-p",
                           "no:cacheprovider", module], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, check=False, timeout=50)


def test_a_module_whose_first_test_was_left_out_is_left_out_whole(tmp_path: Path) -> None:
    """The first test carries the module's set-up; a later short one would pay it again unseen."""
    (tmp_path / "test_mod.py").write_text(
        "import pytest\n"
        "@pytest.fixture(scope='module')\ndef boot():\n    return 1\n"
        "def test_first(boot):\n    pass\n"
        "def test_second(boot):\n    pass\n")
    run = run_budgeted(tmp_path, "test_mod.py", {"test_mod.py::test_first": 600.0,
                                                  "test_mod.py::test_second": 0.01}, 60)
    assert "2 skipped" in run.stdout, run.stdout
    assert "an earlier test of test_mod.py was left out" in run.stdout


def test_a_modules_first_slow_test_keeps_the_build_estimate_after_its_other_tests_ran(tmp_path: Path) -> None:
    """The debug-kernel test of test_memcg_ops once started with 3 min left, as if the
    module's earlier tests had built its kernel; it needs its own build."""
    (tmp_path / "conftest.py").write_text(
        "def pytest_configure(config):\n    config.addinivalue_line('markers', 'slow: builds a kernel')\n")
    (tmp_path / "test_mod.py").write_text(
        "import pytest\n"
        "def test_ordinary():\n    pass\n"
        "@pytest.mark.slow\ndef test_builds():\n    pass\n"
        "@pytest.mark.slow\ndef test_reads_the_build():\n    pass\n")
    run = run_budgeted(tmp_path, "test_mod.py", {"test_mod.py::test_ordinary": 0.01}, 600)
    assert "1 passed, 2 skipped" in run.stdout, run.stdout
    # Both slow tests: the group's build has not run, so neither counts as reading it.
    assert run.stdout.count(f"this test may take {DEFAULT_SLOW_SECONDS / 60:.1f} min") == 2, run.stdout


def test_in_pytest_a_test_running_past_the_hard_stop_is_stopped_with_its_make(tmp_path: Path) -> None:
    # The test starts (its history says 0.1 s, and 3 s are left), then runs long: 1 s after the
    # deadline it is stopped, reported as skipped with how long it ran, and the process group it
    # started (as the kernel build starts make) is terminated on the way out.
    pidfile = tmp_path / "pid"
    (tmp_path / "test_demo.py").write_text(
        "import subprocess, time\n"
        "from memcg_bpf.testbed.kernel.build import stop_group_on_exit\n"
        "def test_long():\n"
        "    with subprocess.Popen(['sh', '-c', 'sleep 60 & echo $! > %s; wait'], text=True,\n"
        "                          start_new_session=True) as proc, stop_group_on_exit(proc):\n"
        "        proc.wait()\n"
        "def test_after():\n    pass\n" % pidfile)
    began = time.monotonic()
    run = run_budgeted(tmp_path, "test_demo.py", {"test_demo.py::test_long": 0.1, "test_demo.py::test_after": 0.1},
                       3, MEMCG_BPF_TEST_GRACE="1")
    took = time.monotonic() - began
    assert run.returncode == 0 and "2 skipped" in run.stdout, run.stdout + run.stderr
    assert re.search(r"time budget: stopped after \d+\.\d min, 0\.0 min past the deadline", run.stdout), run.stdout
    assert "1 test(s) stopped" in run.stdout and "1 test(s) not started" in run.stdout, run.stdout
    assert took < 30, took
    sleeper = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{sleeper}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{sleeper}").exists(), "the test's process group outlived the stop"
    # The stopped test keeps its old estimate: a run cut short says nothing about the next one.
    assert json.loads((tmp_path / "cache" / "test-durations.json").read_text())["test_demo.py::test_long"] == 0.1
