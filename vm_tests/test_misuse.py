"""Misuse of the CLI inside the VM: every bad input of vm_tests/bad_inputs.py (one boot for all),
kill -9 in the middle of loads and unloads, and two loads at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from memcg_bpf.testbed.kernel.build import Artifacts

from .bad_inputs import ROWS, BadInput, matches
from .conftest import record, run_vm

ERROR = "memcg-bpf: error: "


def misuse(kernel: Artifacts, case: str, args: dict[str, Any], timeout: float = 600) -> Any:
    vm = run_vm(kernel, ["python3", "-m", "vm_tests.guest.misuse", case, json.dumps(args, default=str)],
                timeout=timeout)
    assert vm.exit_code == 0, vm.stderr[-6000:]
    out = vm.json()
    record(kernel, f"misuse-{case}", args, 2, out)
    return out


@pytest.fixture(scope="module")
def bad_input_results(kernel: Artifacts, policies_built: list[Path],
                      bpf_object: Callable[..., Path]) -> dict[str, Any]:
    """All rows in one boot: they restore what they change, and the guest checks that they do."""
    objects = {"no_ops": bpf_object("no_ops"), "observe": bpf_object("observe"),
               "observe-legacy": bpf_object("observe", "LEGACY"),
               "bad_write-long": bpf_object("bad_write", "FIELD=gfp_mask", "LONG_LOG")}
    return misuse(kernel, "bad_inputs", {"objects": objects})  # type: ignore[no-any-return]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(bad_input_results: dict[str, Any], row: BadInput) -> None:
    """The exact one-line error, the exit code, no traceback, nothing left behind."""
    r = bad_input_results[row.id]
    lines = r["stderr"].strip().splitlines()
    assert lines, f"no error printed (exit {r['rc']}, stdout {r['stdout']!r})"
    assert lines[-1].startswith(ERROR), r["stderr"]
    assert matches(row.message, lines[-1][len(ERROR):]), f"\n{lines[-1][len(ERROR):]}\n{row.message}"
    assert r["rc"] == row.exit, r["stderr"]
    assert "Traceback" not in r["stderr"]
    assert row.shows in r["stderr"]
    assert not r["pins_changed"], "the failed command changed the pins"
    assert not r["left_behind"], "pins or kernel objects were left behind"


def test_verifier_log_tail_is_shown_whole(bad_input_results: dict[str, Any]) -> None:
    """A verifier log of many kilobytes: its end, where the reason is, reaches the user uncut."""
    shown = bad_input_results["verifier-long-log"]["stderr"].strip().splitlines()[:-1]
    # ~1000 instructions of log (tens of KiB) before the reason; the last of them, the reason
    # and the verifier's closing line are all there.
    assert any(line.startswith("998: ") for line in shown), shown
    assert any(line.startswith("processed 999 insns") for line in shown), shown


# What list shows after a load or unload was killed at each step (MEMCG_BPF_KILL_AT).
AFTER_KILL = {
    "load:maps-pinned": "broken",        # an interrupted load: no metadata yet
    "load:meta-pinned": "broken",
    "load:registered": "broken",         # registered, not pinned: the kernel dropped it with the process
    "load:link-pinned": "broken",        # registered and pinned under +staging: list names its link
    "load:renamed": "loaded",            # done: the kill came after the last step
    "unload:renamed-away": "broken",     # still registered under +unloading
    "unload:link-unpinned": "broken",    # unregistered, the rest of the pins still there
}


def test_kill_during_load_and_unload_leaves_a_state_list_reports(kernel: Artifacts,
                                                                   policies_built: list[Path]) -> None:
    """SIGKILL at each step of a load and an unload: list works and shows what is left (a broken entry
    as broken), no registration lacks a pin, and unload --all removes everything."""
    r = misuse(kernel, "kill_load", {})
    assert [rnd["step"] for rnd in r["rounds"]] == list(AFTER_KILL)
    for rnd in r["rounds"]:
        step = rnd["step"]
        assert rnd["rc"] == -9, f"{step}: the command was not killed there (exit {rnd['rc']})"
        assert rnd["list_rc"] == 0, f"{step}: list failed: {rnd['list_stderr']}"
        assert rnd["unnamed_registrations"] == [], f"{step}: a registration no pin names"
        [entry] = rnd["entries"]
        assert ("broken" if entry["broken"] else "loaded") == AFTER_KILL[step], (step, entry)
        if step in ("load:link-pinned", "unload:renamed-away"):
            assert entry["link_id"] is not None and "still registered" in rnd["list_text"], (step, rnd)
        if entry["broken"]:
            assert f"BROKEN: {entry['broken']}; 'memcg-bpf unload telemetry' removes it" in rnd["list_text"]
        assert rnd["cleanup_rc"] == 0 and rnd["after_cleanup"] == [], f"{step}: unload --all left {rnd}"
        assert rnd["registered_after_cleanup"] == [], f"{step}: still registered after unload --all"
    gc = r["gc"]
    assert gc["load_rc"] == 0, f"a load after a killed one failed: {gc['load_stderr']}"
    assert [(e["name"], e["broken"]) for e in gc["entries"]] == [("telemetry", None)]
    assert gc["cleanup_rc"] == 0


def test_two_concurrent_loads_exactly_one_wins(kernel: Artifacts, policies_built: list[Path]) -> None:
    """A second load while the first is registered but not yet in place: it waits for the lock (seen in
    /proc/locks; the first is held until then), then fails naming the first (without the lock it would find no pins and blame "a program memcg-bpf did
    not load")."""
    r = misuse(kernel, "concurrent_loads", {"rounds": 2})
    for rnd in r["rounds"]:
        assert rnd["paused"], "the first load never reached its critical section; the test proves nothing"
        [during] = rnd["during"]
        assert during["name"] == "first" and during["in_progress"], during
        assert during["broken"].startswith("a load in progress (pid "), during
        assert rnd["second_waited"], "the second load never waited for the lock; the test proves nothing"
        first, second = rnd["results"]
        assert first["rc"] == 0, first["stderr"]
        assert second["rc"] == 1, second["stderr"]
        assert rnd["loaded"] == ["first"]
        assert second["stderr"].strip().splitlines()[-1] == (
            f"{ERROR}the root cgroup already has policy 'first' attached: replace it with "
            "'memcg-bpf load POLICY --replace first', or run 'memcg-bpf unload first' first")
        assert rnd["cleanup_rc"] == 0 and rnd["after"] == []


def test_the_advice_for_a_foreign_holder_works(kernel: Artifacts, policies_built: list[Path],
                                               bpf_object: Callable[..., Path]) -> None:
    """The error for memcg_ops held by another program names a command; running it frees memcg_ops."""
    r = misuse(kernel, "follow_holder_advice", {"objects": {"observe": bpf_object("observe")},
                                                "bpftool": kernel.bpftool})
    assert r["refused"]["rc"] == 1 and r["advice"], r["refused"]["stderr"]
    assert r["followed_rc"] == 0, r["followed_stderr"]
    assert r["loaded"]["rc"] == 0, r["loaded"]["stderr"]
    assert r["cleanup"]["rc"] == 0
