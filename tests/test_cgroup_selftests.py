"""Parsing the TAP output of the kernel's cgroup selftests."""

from __future__ import annotations

import pytest

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.testbed.cgroup_selftests import parse

# test_memcontrol's output on a pipe: a forked child printed the parent's buffered lines again.
OUTPUT = """TAP version 13
1..4
ok 1 test_memcg_subtree_control
ok 1 test_memcg_subtree_control
not ok 2 test_memcg_current_peak
ok 3 # SKIP test_memcg_sock
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
"""


def test_results_by_name_with_a_child_s_repeated_lines_counted_once() -> None:
    assert parse(OUTPUT) == {"test_memcg_subtree_control": "pass", "test_memcg_current_peak": "fail",
                             "test_memcg_sock": "skip"}


def test_a_test_reported_both_ways_is_an_error() -> None:
    with pytest.raises(MemcgBpfError, match="test_x as both pass and fail"):
        parse("ok 1 test_x\nnot ok 1 test_x\n")


def test_no_result_lines_give_nothing() -> None:
    assert parse("TAP version 13\nBail out! cgroup v2 isn't mounted\n") == {}
