"""apply's file format and its plan (host: no kernel involved; apply itself runs in the VM tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from memcg_bpf.cli import main
from memcg_bpf.runtime.declare import DIGEST_KEY, Declared, FileError, parse, plan

GOOD = """\
# two policies
[[policy]]
name = "fleet"
policy = "telemetry"
allow_override = true

[[policy]]
name = "batch-boost"
policy = "reclaim_boost"
cgroup = "/batch/"
knobs = { reclaim_pages = 256, cgroup_ids = ["/batch", 7], verbose = true }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path: Path) -> None:
    fleet, boost = parse(write(tmp_path, GOOD))
    assert (fleet.name, fleet.policy, fleet.cgroup, fleet.allow_override, fleet.line) == (
        "fleet", "telemetry", "/", True, 2)
    assert (boost.cgroup, boost.line) == ("/batch", 7)
    assert boost.sets() == ("cgroup_ids=/batch,7", "reclaim_pages=256", "verbose=1")
    assert boost.digest("a") == boost.digest("a") != boost.digest("b")


@pytest.mark.parametrize("text, message", [
    ("[[policy]]\nname = 'x'\n", r"policies.toml:1: 'policy' is missing or not a string"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\ncgroupp = '/a'\n", r":1: unknown key 'cgroupp': use allow_override"),
    ("[[policy]]\nname = 'bad name'\npolicy = 'noop'\n", r":1: .*name"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\ncgroup = 'batch'\n", r":1: cgroup 'batch' must be a path"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\nknobs = { a = 1.5 }\n", r":1: knob 'a' is a float"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\nallow_override = 'yes'\n", r":1: allow_override must be true"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\n\n[[policy]]\nname = 'x'\npolicy = 'noop'\ncgroup = '/b'\n",
     r":5: policy name 'x' is also declared at line 1"),
    ("[[policy]]\nname = 'x'\npolicy = 'noop'\n[[policy]]\nname = 'y'\npolicy = 'noop'\n",
     r":4: cgroup / already has policy 'x' \(line 1\)"),
    ("[[policy]\n", r"policies.toml: not valid TOML"),
    ("policies = 1\n", r"unknown top-level key 'policies'"),
])
def test_bad_files_name_the_line_and_change_nothing(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FileError, match=message) as info:
        parse(write(tmp_path, text))
    assert info.value.message.endswith("; nothing was changed")


def test_the_cli_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["apply", str(write(tmp_path, "[[policy]]\nname = 'x'\n"))])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("memcg-bpf: error: ")
    missing = CliRunner().invoke(main, ["apply", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "No such file" in missing.output


def declared(name: str, cgroup: str) -> Declared:
    return Declared(name, "noop", cgroup, {}, False, 1)


def test_the_plan() -> None:
    file = [declared("top", "/"), declared("same", "/a"), declared("changed", "/b"), declared("moved", "/c/d"),
            declared("new", "/e/f")]
    digests = {d.name: d.name + "-digest" for d in file}
    loaded = {"same": {"cgroup": "/a", DIGEST_KEY: "same-digest"},
              "changed": {"cgroup": "/b", DIGEST_KEY: "old"},
              "moved": {"cgroup": "/c", DIGEST_KEY: "before-the-move"},
              "stale-child": {"cgroup": "/x/y"}, "stale": {"cgroup": "/x"}}
    p = plan(file, loaded, digests)
    assert p.unload == ["stale-child", "stale", "moved"]          # children first
    assert [d.name for d in p.load] == ["top", "moved", "new"]     # parents first
    assert [d.name for d in p.replace] == ["changed"] and p.keep == ["same"]
    again = plan([file[1]], {"same": loaded["same"]}, digests)
    assert again.empty and again.keep == ["same"]
