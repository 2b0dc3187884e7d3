"""Series handling with the real patch(1) on small trees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.testbed.kernel.patches import apply_series, read_series
from memcg_bpf.paths import REPO_ROOT

PATCH = """\
--- a/hello.c
+++ b/hello.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+int b2;
 int c;
"""


def test_project_series_names_existing_patches() -> None:
    series = read_series(REPO_ROOT / "kernel_patch")
    assert len(series.patches) >= 2
    assert all(p.suffix == ".patch" for p in series.patches)


def test_missing_series_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="series is missing"):
        read_series(tmp_path)


def test_series_naming_a_missing_patch(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-x.patch\n")
    with pytest.raises(UsageError, match="names 0001-x.patch, which does not exist"):
        read_series(tmp_path)


def test_digest_changes_with_content(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("a.patch\n")
    (tmp_path / "a.patch").write_text(PATCH)
    before = read_series(tmp_path).digest()
    (tmp_path / "a.patch").write_text(PATCH + "\n")
    assert read_series(tmp_path).digest() != before


def test_digest_ignores_the_commit_id_and_the_series_length(tmp_path: Path) -> None:
    def digest(header: str, body: str = PATCH) -> str:
        (tmp_path / "series").write_text("0001-a.patch\n")
        (tmp_path / "0001-a.patch").write_text(header + body)
        return read_series(tmp_path).digest()

    in_seven = digest(f"From {'1' * 40} Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/7] mm: a\n\n")
    # The same patch, exported again from an eight-patch series after a rebase.
    assert digest(f"From {'2' * 40} Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/8] mm: a\n\n") == in_seven
    assert digest("Subject: [PATCH v2 1/8] mm: a\n\n") == in_seven
    # What the patch says still counts: its subject and its body.
    assert digest(f"From {'1' * 40} Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/7] mm: b\n\n") != in_seven
    assert digest("Subject: [PATCH 1/7] mm: a\n\n", PATCH + "\n") != in_seven


def make_tree(tmp_path: Path, body: str) -> tuple[Path, Path]:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.c").write_text(body)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0001-rename-b.patch").write_text(PATCH)
    (patches / "series").write_text("# comment\n0001-rename-b.patch\n")
    return tree, patches


def test_apply_series(tmp_path: Path) -> None:
    tree, patches = make_tree(tmp_path, "int a;\nint b;\nint c;\n")
    apply_series(read_series(patches), tree)
    assert (tree / "hello.c").read_text() == "int a;\nint b2;\nint c;\n"


def test_failed_patch_names_patch_file_and_hunk(tmp_path: Path) -> None:
    tree, patches = make_tree(tmp_path, "int x;\nint y;\nint z;\n")
    with pytest.raises(MemcgBpfError) as info:
        apply_series(read_series(patches), tree)
    message = info.value.message
    assert "patch 0001-rename-b.patch does not apply" in message
    assert "hello.c hunk #1 (at line 1)" in message
    assert not list(tree.glob("*.rej")) and not list(tree.glob("*.orig"))


def test_project_patches_are_git_format_patch_with_signoff() -> None:
    for patch in read_series(REPO_ROOT / "kernel_patch").patches:
        text = patch.read_text()
        assert text.startswith("From "), patch.name
        assert "\nSigned-off-by: " in text, patch.name
        assert subprocess.run(["git", "apply", "--stat", str(patch)], capture_output=True,
                              check=False).returncode == 0, patch.name
