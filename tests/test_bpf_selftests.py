"""Parsing test_progs output (memcg_bpf.testbed.bpf_selftests)."""

from __future__ import annotations

import pytest

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.testbed.bpf_selftests import parse

OUTPUT = """Failed to unload bpf_testmod.ko from kernel: -38
WARNING! Selftests relying on bpf_testmod.ko will be skipped.
#1/1     memcg_ops/verifier:OK
#1/2     memcg_ops/attach_errnos:OK
test_reclaim_target:FAIL:fentry nr_pages unexpected fentry nr_pages: actual 1 != expected 64
#1/3     memcg_ops/reclaim_target:FAIL
#1/4     memcg_ops/reentry:SKIP
#1       memcg_ops:FAIL
Summary: 0/2 PASSED, 1 SKIPPED, 1 FAILED
"""


def test_summary_and_subtests() -> None:
    outcome = parse(OUTPUT)
    assert (outcome.passed, outcome.subtests_passed, outcome.skipped, outcome.failed) == (0, 2, 1, 1)
    assert outcome.subtests == {"verifier": "OK", "attach_errnos": "OK", "reclaim_target": "FAIL",
                                "reentry": "SKIP"}


def test_no_summary_is_an_error() -> None:
    with pytest.raises(MemcgBpfError, match="no summary line"):
        parse("#1/1     memcg_ops/verifier:OK\n")
