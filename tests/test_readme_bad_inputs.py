"""The README's table of bad inputs is the one vm_tests/test_misuse.py runs."""

from __future__ import annotations

from memcg_bpf.paths import REPO_ROOT
from vm_tests.bad_inputs import ROWS, render_table


def test_readme_has_the_table_the_vm_tests_run() -> None:
    assert len(ROWS) >= 30
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert render_table() in (REPO_ROOT / "README.md").read_text(), \
        "README.md is out of date: paste the output of 'python3 -m vm_tests.bad_inputs'"
