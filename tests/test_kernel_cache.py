"""The kernel cache: listing, pruning by last use, the free-space check, one tree for every other series."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memcg_bpf.cli import main
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.paths import REPO_ROOT
from memcg_bpf.testbed.kernel import cache as kcache
from memcg_bpf.testbed.kernel.build import BuildRequest, Builder, cached
from memcg_bpf.testbed.kernel.patches import read_series
from memcg_bpf.testbed.kernel.source import KernelSource
from memcg_bpf.progress import Progress

DAY = 86400


def entry(cache: Path, sub: str, name: str, idle_days: float, *, marked: bool = True,
          variant: str = "memcg-bpf") -> Path:
    directory = cache / sub / name
    directory.mkdir(parents=True)
    (directory / "payload").write_bytes(b"x" * 4096)
    if sub == "kernels":
        (directory / "manifest.json").write_text(json.dumps({"variant": variant}))
    then = time.time() - idle_days * DAY
    if marked:
        kcache.mark_used(directory)
        os.utime(directory / kcache.LAST_USED, (then, then))
    for child in directory.iterdir():
        os.utime(child, (then, then))
    return directory


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MEMCG_BPF_CACHE", str(root))
    return root


def cli(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, json.loads(result.output) if "--json" in args and result.output else result.output


def test_cache_lists_trees_and_kernels_least_recently_used_first(cache: Path) -> None:
    entry(cache, "trees", "memcg-bpf", 1)
    entry(cache, "kernels", "0123456789abcdef", 20, variant="memcg-bpf-7e6984ddbe")
    # Built before last-used existed: its newest file says when.
    entry(cache, "trees", "memcg-bpf-ec98e0c12f", 30, marked=False)
    code, out = cli("kernel", "cache", "--json")
    assert code == 0
    rows = [(e["kind"], e["variant"], round(e["idle_days"])) for e in out["entries"]]
    assert rows == [("tree", "memcg-bpf-ec98e0c12f", 30), ("kernel", "memcg-bpf-7e6984ddbe", 20),
                    ("tree", "memcg-bpf", 1)]
    assert out["bytes"] == sum(e["bytes"] for e in out["entries"]) > 3 * 4096


def test_prune_removes_only_what_was_idle_that_long(cache: Path) -> None:
    fresh = entry(cache, "trees", "memcg-bpf", 1)
    old_tree = entry(cache, "trees", "memcg-bpf-ec98e0c12f", 30, marked=False)
    old_kernel = entry(cache, "kernels", "0123456789abcdef", 20)
    code, out = cli("kernel", "prune", "--dry-run", "--json")
    assert code == 0 and out["dry_run"]
    assert sorted(r["path"] for r in out["removed"]) == sorted([str(old_tree), str(old_kernel)])
    assert old_tree.exists() and old_kernel.exists()      # a dry run removes nothing
    code, text = cli("kernel", "prune", "--older-than", "14")
    assert code == 0 and "freed" in text and "2 entries" in text
    assert fresh.exists() and not old_tree.exists() and not old_kernel.exists()
    assert sorted(p.name for p in (cache / "trees").iterdir()) == ["memcg-bpf"]  # no .pruning left
    code, out = cli("kernel", "prune", "--older-than", "0", "--json")
    assert code == 0 and [r["path"] for r in out["removed"]] == [str(fresh)]
    assert not fresh.exists()


def test_prune_of_an_empty_or_missing_cache(cache: Path) -> None:
    code, text = cli("kernel", "prune")
    assert code == 0 and "freed 0 B (0 entries" in text


def test_bad_age_is_a_usage_error(cache: Path) -> None:
    result = CliRunner().invoke(main, ["kernel", "prune", "--older-than", "-1"])
    assert result.exit_code == 2 and "--older-than" in result.output


def test_a_cache_hit_marks_the_kernel_used(cache: Path, tmp_path: Path) -> None:
    request = BuildRequest(KernelSource(tmp_path, "6.12.0", "test"), None, {})
    directory = entry(cache, "kernels", request.key(), 30)
    tree = entry(cache, "trees", request.variant, 30)
    assert cached(cache, request) is not None
    assert time.time() - kcache.last_used(directory) < 60
    assert time.time() - kcache.last_used(tree) < 60


def test_a_build_that_would_fill_the_disk_is_refused_first(cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(kcache.shutil, "disk_usage", lambda _: usage._replace(free=3 * kcache.GIB))
    request = BuildRequest(KernelSource(tmp_path, "6.12.0", "test"), None, {})
    with pytest.raises(MemcgBpfError, match=r"only 3.0 GiB free .* needs about 8 GiB: free space with "
                                            r"'memcg-bpf kernel prune'"):
        Builder(cache, request, Progress(quiet=True)).run()
    assert not (cache / "trees").exists()   # refused before anything was made
    kcache.check_free_space(cache, new_tree=False)   # an existing tree needs less: 3 GiB will do


def test_every_other_series_shares_one_tree(tmp_path: Path) -> None:
    bundled = read_series(REPO_ROOT / "kernel_patch")
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    first = bundled.patches[0]
    shutil.copy(first, prefix / first.name)
    (prefix / "series").write_text(first.name + "\n")
    source = KernelSource(tmp_path, "6.12.0", "test")
    assert BuildRequest(source, bundled, {}).variant == "memcg-bpf"
    other = BuildRequest(source, read_series(prefix), {})
    assert other.variant == "memcg-bpf-series"
    assert other.key() != BuildRequest(source, bundled, {}).key()   # the artifacts stay apart
