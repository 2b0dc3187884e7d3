"""Reading cgroup2 files: flat keyed files and PSI files (memcg_bpf.runtime.cgroups)."""

from __future__ import annotations

from pathlib import Path

from memcg_bpf.runtime.cgroups import flat_keyed, pressure


def test_flat_keyed_reads_integers_and_skips_the_rest(tmp_path: Path) -> None:
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 12\nmax 3\noom 0\noom_kill 0\noom_group_kill 0\n")
    assert flat_keyed(events) == {"low": 0, "high": 12, "max": 3, "oom": 0, "oom_kill": 0, "oom_group_kill": 0}
    odd = tmp_path / "odd"
    odd.write_text("anon 4096\nnegative -2\nwords not a number\n\n")
    assert flat_keyed(odd) == {"anon": 4096, "negative": -2}


def test_pressure_reads_both_lines(tmp_path: Path) -> None:
    psi = tmp_path / "memory.pressure"
    psi.write_text("some avg10=1.50 avg60=0.20 avg300=0.00 total=123456\n"
                   "full avg10=0.75 avg60=0.10 avg300=0.00 total=65432\n")
    assert pressure(psi) == {"some": {"avg10": 1.5, "avg60": 0.2, "avg300": 0.0, "total": 123456.0},
                             "full": {"avg10": 0.75, "avg60": 0.1, "avg300": 0.0, "total": 65432.0}}
