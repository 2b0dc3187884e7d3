"""Parsing `make W=1 C=2` output and comparing two trees (the VM-side test runs the real make)."""

from __future__ import annotations

from collections import Counter

from memcg_bpf.testbed.kernel.extra_checks import CheckRun, added, parse, source_path

PATCHED = """\
make[1]: Entering directory '/root/.cache/memcg-bpf/trees/memcg-bpf/src/build-out'
  CC      mm/memcontrol.o
  CHECK   ../mm/memcontrol.c
../mm/memcontrol.c:1201:9: warning: context imbalance in 'folio_lruvec_lock' - wrong count at exit
../mm/memcontrol.c:1230:9: warning: context imbalance in 'folio_lruvec_lock_irq' - wrong count at exit
  CC      mm/memcontrol_bpf.o
  CHECK   ../mm/memcontrol_bpf.c
../mm/memcontrol_bpf.c:610:25: warning: symbol 'bpf_mem_cgroup_usage' was not declared. Should it be static?
../mm/memcontrol_bpf.c:88:17: warning: incorrect type in assignment (different address spaces)
../mm/memcontrol_bpf.c:88:17:    expected struct memcg_ops [noderef] __rcu *
../mm/memcontrol_bpf.c:88:17:    got struct memcg_ops *
  CHECK   /root/.cache/memcg-bpf/trees/memcg-bpf/src/kernel/bpf/bpf_struct_ops.c
"""

UNPATCHED = """\
  CHECK   ../mm/memcontrol.c
../mm/memcontrol.c:1190:9: warning: context imbalance in 'folio_lruvec_lock' - wrong count at exit
../mm/memcontrol.c:1219:9: warning: context imbalance in 'folio_lruvec_lock_irq' - wrong count at exit
"""


def test_paths_are_relative_to_the_source_tree() -> None:
    assert source_path("../mm/memcontrol.c") == "mm/memcontrol.c"
    assert source_path("/root/.cache/memcg-bpf/trees/baseline/src/kernel/bpf/btf.c") == "kernel/bpf/btf.c"
    assert source_path("mm/memcontrol.c") == "mm/memcontrol.c"


def test_parse_collects_checked_files_and_drops_line_numbers() -> None:
    run = parse(PATCHED)
    assert run.checked == {"mm/memcontrol.c", "mm/memcontrol_bpf.c", "kernel/bpf/bpf_struct_ops.c"}
    assert run.diagnostics["mm/memcontrol.c: warning: context imbalance in 'folio_lruvec_lock' "
                           "- wrong count at exit"] == 1
    # The "expected/got" follow-up lines are not diagnostics of their own.
    assert sum(run.diagnostics.values()) == 4


def test_only_what_the_patched_tree_adds_is_reported() -> None:
    new = added(parse(PATCHED), parse(UNPATCHED))
    assert new == [
        "mm/memcontrol_bpf.c: warning: incorrect type in assignment (different address spaces)",
        "mm/memcontrol_bpf.c: warning: symbol 'bpf_mem_cgroup_usage' was not declared. Should it be static?",
    ]


def test_a_warning_that_appears_once_more_counts() -> None:
    line = "mm/memcontrol.c: warning: context imbalance in 'x' - wrong count at exit"
    twice = CheckRun(frozenset(), Counter({line: 2}))
    once = CheckRun(frozenset(), Counter({line: 1}))
    assert added(twice, once) == [line]
    assert added(once, twice) == []
