"""Counting program runs between two readings of per-cgroup slot counts (bench/guest.py)."""

from __future__ import annotations

from bench.guest import runs_between


def test_runs_are_the_growth_of_each_cgroup() -> None:
    assert runs_between({0: 1, 17: 10, 18: 5}, {0: 3, 17: 12, 19: 4}) == 2 + 2 + 4


def test_a_slot_taken_over_by_a_new_cgroup_counts_from_zero() -> None:
    # The css id of cgroup 17 went to cgroup 19: its slot restarted, the old count is gone.
    assert runs_between({0: 0, 17: 2353}, {0: 0, 19: 73}) == 73
    # Same cgroup id seen lower than before: the slot restarted in between.
    assert runs_between({17: 2353}, {17: 73}) == 73


def test_no_counter_means_no_count() -> None:
    assert runs_between(None, {1: 1}) is None
    assert runs_between({1: 1}, None) is None
