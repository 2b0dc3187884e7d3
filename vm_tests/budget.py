"""A time budget for `scripts/test` (pytest plugin: `-p vm_tests.budget`).

`.ci/run` has 90 minutes, and the machines it runs on differ: the same
suite has taken 42 minutes on one and about three times as long on another
(kernel builds 6.5 against 16 minutes, a VM boot 2.2 against 7 s). So the
suite runs in an order that puts the most checks first, and stops starting
tests it cannot finish:

- the cheapest module first (by what its tests took on this machine last
  time), a module's tests together (they share fixtures, a VM boot, a
  build); the tests that build other kernels (marker `slow`) last;
- before each test, if what is left until MEMCG_BPF_TEST_DEADLINE (epoch
  seconds; `scripts/test` sets it from MEMCG_BPF_TEST_BUDGET) is less than
  the test is expected to take, the test is skipped, and the skip says so
  and how to run it; the end of the run lists how many the budget left out.

- a test still running HARD_STOP_GRACE seconds after the deadline is
  stopped there (SIGALRM; it is reported as skipped, with how long it ran):
  a first estimate can be far off (the debug kernel's build and KASAN runs
  on a slow machine), and CI must end inside its 90 minutes whatever a
  test takes. Kernel builds end their make cleanly on the way out, so the
  next run continues the build where this one stopped.

Expected: the test's duration (set-up, call, teardown) in its last run on
this machine, kept in the cache; a default where it never ran here. A test
stopped at the hard stop keeps its old estimate. Without
MEMCG_BPF_TEST_DEADLINE nothing is skipped, stopped or timed, and only the
order changes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from memcg_bpf.paths import cache_dir

DEADLINE_ENV = "MEMCG_BPF_TEST_DEADLINE"
# Never run here: a host-only test (tests/) takes well under a second, a VM test about a minute or
# more, one that builds a kernel (slow) up to half an hour.
DEFAULT_HOST_SECONDS = 5.0
DEFAULT_SECONDS = 180.0
DEFAULT_SLOW_SECONDS = 1500.0
# How long past the deadline a running test may go on before it is stopped: scripts/test's default
# budget (70 min) plus this leaves .ci/run ten minutes of its 90 for teardown and the report.
HARD_STOP_GRACE = 300.0
GRACE_ENV = "MEMCG_BPF_TEST_GRACE"  # seconds; tests of this plugin shorten it


def history_path() -> Path:
    return cache_dir() / "test-durations.json"


def read_history(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def write_history(path: Path, history: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(history, indent=0, sort_keys=True))
    tmp.replace(path)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def expected(nodeid: str, slow: bool, history: dict[str, float], group_started: bool = False) -> float:
    """Seconds NODEID is expected to take: its last run here, else a default.

    A slow test's default covers a kernel build, which the first slow test
    of a module makes (module-scoped fixtures); the slow tests after it
    only read what that one built. The module's other tests, which run
    earlier, do not build it.
    """
    if nodeid in history:
        return history[nodeid]
    if slow and not group_started:
        return DEFAULT_SLOW_SECONDS
    return DEFAULT_HOST_SECONDS if nodeid.startswith("tests/") else DEFAULT_SECONDS


def order(tests: Iterable[tuple[str, bool]], history: dict[str, float]) -> list[int]:
    """Indices of (nodeid, slow) pairs in run order: modules cheapest first, slow tests last.

    Within each of the two groups a module's tests stay together and in
    their written order.
    """
    tests = list(tests)
    cost: dict[tuple[bool, str], float] = {}
    for nodeid, slow in tests:
        key = (slow, module_of(nodeid))
        cost[key] = cost.get(key, 0.0) + expected(nodeid, slow, history, key in cost)

    def rank(index: int) -> tuple[bool, float, str, int]:
        nodeid, slow = tests[index]
        module = module_of(nodeid)
        return (slow, cost[(slow, module)], module, index)
    return sorted(range(len(tests)), key=rank)


def how_to_run(nodeid: str) -> str:
    return f"run it with '.venv/bin/python -m pytest {nodeid}', or the suite with MEMCG_BPF_TEST_BUDGET=0"


def skip_reason(nodeid: str, left: float, needs: float, ran_before: bool) -> str | None:
    if needs <= left:
        return None
    basis = "took" if ran_before else "may take"
    return (f"time budget: {max(left, 0) / 60:.1f} min left and this test {basis} {needs / 60:.1f} min here; "
            + how_to_run(nodeid))


def stop_reason(nodeid: str, ran: float, grace: float) -> str:
    return (f"time budget: stopped after {ran / 60:.1f} min, {grace / 60:.1f} min past the deadline; "
            + how_to_run(nodeid))


class Budget:
    def __init__(self, deadline: float | None, path: Path, grace: float = HARD_STOP_GRACE) -> None:
        self.deadline = deadline
        self.grace = grace
        self.path = path
        self.history = read_history(path)
        self.durations: dict[str, float] = {}
        self.skipped: list[str] = []
        # (slow, module) groups with a test that ran (their fixtures are set up) or that the budget skipped
        self.started: set[tuple[bool, str]] = set()
        self.left_out: set[tuple[bool, str]] = set()
        self.stopped: list[str] = []  # tests stopped at the hard stop

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        """Stop the test (set-up, call and teardown) at the hard stop, as a skip that says so."""
        left = None if self.deadline is None else self.deadline + self.grace - time.time()
        if left is None or left <= 0:
            yield
            return
        began = time.time()

        def stop(signum: int, frame: object) -> None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.stopped.append(item.nodeid)
            pytest.skip(stop_reason(item.nodeid, time.time() - began, self.grace))
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        pairs = [(item.nodeid, item.get_closest_marker("slow") is not None) for item in items]
        items[:] = [items[i] for i in order(pairs, self.history)]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.deadline is None:
            return
        slow = item.get_closest_marker("slow") is not None
        module = module_of(item.nodeid)
        # A module's slow tests are a group of their own: they run at the end, apart from the
        # module's other tests, and their first one builds a kernel those others never needed.
        group = (slow, module)
        reason = skip_reason(item.nodeid, self.deadline - time.time(),
                             expected(item.nodeid, slow, self.history, group in self.started),
                             item.nodeid in self.history)
        if not reason and group in self.left_out and group not in self.started:
            # The first test's time included the group's set-up (a VM boot, a build): the next
            # test would pay it too, and its own short time does not show that.
            reason = (f"time budget: an earlier test of {module} was left out, and with it the set-up "
                      f"this test shares; run it with '.venv/bin/python -m pytest {item.nodeid}'")
        if reason:
            self.skipped.append(item.nodeid)
            self.left_out.add(group)
            pytest.skip(reason)
        self.started.add(group)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and report.when == "setup":
            return
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        ran = {k: v for k, v in self.durations.items() if k not in self.skipped and k not in self.stopped}
        if ran:
            try:
                write_history(self.path, {**self.history, **ran})
            except OSError:
                pass  # a read-only cache: the next run orders by defaults

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.deadline is None:
            return
        if self.stopped:
            terminalreporter.write_line(
                f"time budget: {len(self.stopped)} test(s) stopped {self.grace / 60:.1f} min past the deadline: "
                + ", ".join(self.stopped))
        if self.skipped:
            terminalreporter.write_line(
                f"time budget: {len(self.skipped)} test(s) not started, to end by MEMCG_BPF_TEST_DEADLINE; "
                "MEMCG_BPF_TEST_BUDGET=0 scripts/test runs them all")
        elif not self.stopped:
            terminalreporter.write_line("time budget: every selected test ran")


def pytest_configure(config: pytest.Config) -> None:
    raw = os.environ.get(DEADLINE_ENV, "")
    try:
        deadline = float(raw) if raw else None
    except ValueError:
        raise pytest.UsageError(f"{DEADLINE_ENV}={raw!r} is not a number of seconds since the epoch: "
                                "unset it, or set MEMCG_BPF_TEST_BUDGET (minutes) for scripts/test") from None
    raw_grace = os.environ.get(GRACE_ENV, "")
    try:
        grace = float(raw_grace) if raw_grace else HARD_STOP_GRACE
    except ValueError:
        raise pytest.UsageError(f"{GRACE_ENV}={raw_grace!r} is not a number of seconds: unset it "
                                f"(default {HARD_STOP_GRACE:g})") from None
    config.pluginmanager.register(Budget(deadline, history_path(), grace), "memcg-bpf-budget")
