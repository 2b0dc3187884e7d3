"""Where `load --cgroup` attaches: path resolution and its errors, on a directory tree shaped like cgroup2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memcg_bpf.errors import UsageError
from memcg_bpf.runtime import attach
from memcg_bpf.runtime.loader import is_below


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for cg in ("batch", "batch/job", "nomem"):
        (tmp_path / cg).mkdir()
    for cg in ("batch", "batch/job"):
        (tmp_path / cg / "memory.max").write_text("max\n")
    return tmp_path


def test_default_and_root_are_id_zero(root: Path) -> None:
    assert attach.resolve(None, False, root) == attach.Target("/", 0, False)
    assert attach.resolve("/", True, root) == attach.Target("/", 0, True)
    assert attach.resolve(str(root), False, root).cgroup_id == 0


@pytest.mark.parametrize("spec", ["/batch/job", "batch/job", "{root}/batch/job"])
def test_a_cgroup_is_named_by_its_path_and_id(root: Path, spec: str) -> None:
    target = attach.resolve(spec.format(root=root), False, root)
    assert target.path == "/batch/job"
    assert target.cgroup_id == os.stat(root / "batch/job").st_ino
    assert target.flags == 0 and attach.resolve("/batch", True, root).flags == attach.ALLOW_OVERRIDE


def test_errors_name_the_fix(root: Path) -> None:
    with pytest.raises(UsageError, match=r"cgroup '/nope' does not exist: create it with 'mkdir .*/nope'"):
        attach.resolve("/nope", False, root)
    with pytest.raises(UsageError, match=r"has no memory controller: enable it with 'echo \+memory > .*"
                                         r"/cgroup.subtree_control'"):
        attach.resolve("/nomem", False, root)
    with pytest.raises(UsageError, match="outside the cgroup2 mount"):
        attach.resolve("../../etc", False, root)


def test_is_below() -> None:
    assert is_below("/a", "/") and is_below("/a/b", "/a")
    assert not is_below("/", "/") and not is_below("/a", "/a") and not is_below("/ab", "/a")
