"""Bad input to load/unload/stats on the host: one line naming problem and fix, exit code, nothing left behind.

These run on the host kernel, which has no memcg_ops: every check that needs
no kernel comes first, so bad input gets its own message anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memcg_bpf.compile import Toolchain, compile_bpf, vmlinux_h
from memcg_bpf.kernel.api import find_built
from memcg_bpf.libbpf import Libbpf
from memcg_bpf.paths import cache_dir
from memcg_bpf.paths import REPO_ROOT
from memcg_bpf.pins import ROOT as PIN_ROOT
from memcg_bpf.toolchain import find_clang


def cli(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "memcg_bpf", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False, timeout=120)
    return proc.returncode, proc.stderr


@pytest.fixture(autouse=True)
def nothing_left_behind():  # type: ignore[no-untyped-def]
    existed = PIN_ROOT.exists()
    yield
    assert PIN_ROOT.exists() == existed, f"{PIN_ROOT} was left behind"


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def test_kernel_without_memcg_ops() -> None:
    code, err = cli("load", "telemetry")
    assert code == 1
    assert last_line(err) == ("memcg-bpf: error: this kernel has no memcg_ops struct_ops; build and boot the "
                              "patched kernel: memcg-bpf kernel build && memcg-bpf vm run -- ...")


def test_unknown_policy() -> None:
    code, err = cli("load", "nosuch")
    assert code == 2
    assert "unknown policy 'nosuch': bundled policies are noop, reclaim_boost, telemetry" in last_line(err)


def test_not_a_bpf_object(tmp_path: Path) -> None:
    fake = tmp_path / "fake.bpf.o"
    fake.write_text("not an ELF file\n")
    code, err = cli("load", str(fake))
    assert code == 2
    assert f"{fake} is not a BPF object file" in last_line(err)


def compile_test_object(tmp_path: Path, source: Path, *defines: str) -> Path:
    """Compile against the test kernel's BTF, as the VM tests do."""
    kernel = find_built()
    headers = vmlinux_h(Libbpf(kernel.libbpf), kernel.vmlinux, cache_dir())
    return compile_bpf(source, tmp_path, headers, Toolchain(find_clang(), kernel.include), defines=defines)


def test_object_without_memcg_ops_map(tmp_path: Path) -> None:
    obj = compile_test_object(tmp_path, Path(__file__).parent / "bpf" / "no_ops.bpf.c")
    code, err = cli("load", str(obj))
    assert code == 2
    assert "has no memcg_ops struct_ops map" in last_line(err)


def test_legacy_struct_ops_map_is_refused(tmp_path: Path) -> None:
    obj = compile_test_object(tmp_path, REPO_ROOT / "vm_tests" / "bpf" / "observe.bpf.c", "LEGACY")
    code, err = cli("load", str(obj))
    assert code == 2
    assert "map observe_ops" in last_line(err) and "is a legacy .struct_ops map" in last_line(err)


def test_unknown_knob_lists_valid_knobs() -> None:
    code, err = cli("load", "reclaim_boost", "--set", "nope=1")
    assert code == 2
    assert last_line(err) == ("memcg-bpf: error: unknown knob 'nope'; valid knobs: reclaim_pages (__u32, default 128), "
                              "cgroup_ids (memcg_bpf_cgid_t[16], default [])")


@pytest.mark.parametrize("value,message", [
    ("abc", "knob reclaim_pages takes an unsigned 32-bit integer, got 'abc'"),
    ("-1", "knob reclaim_pages takes an unsigned 32-bit integer (0..4294967295), got -1"),
    ("1000", "knob reclaim_pages must be in 1..512, got 1000"),
    ("0", "knob reclaim_pages must be in 1..512, got 0"),
])
def test_bad_knob_value(value: str, message: str) -> None:
    code, err = cli("load", "reclaim_boost", "--set", f"reclaim_pages={value}")
    assert code == 2
    assert last_line(err) == f"memcg-bpf: error: {message}"


def test_bad_cgroup_knob() -> None:
    code, err = cli("load", "reclaim_boost", "--set", "cgroup_ids=/no/such/cgroup")
    assert code == 2
    assert "knob cgroup_ids: '/no/such/cgroup' is neither a cgroup id nor a cgroup under /sys/fs/cgroup" in err


def test_bad_set_syntax() -> None:
    code, err = cli("load", "reclaim_boost", "--set", "reclaim_pages")
    assert code == 2
    assert "--set 'reclaim_pages': write KNOB=VALUE" in err


@pytest.mark.parametrize("command", [["unload", "nosuch"], ["stats", "nosuch"]])
def test_unknown_loaded_name(command: list[str]) -> None:
    code, err = cli(*command)
    assert code == 2
    assert "no policy named 'nosuch' is loaded (loaded: none); see 'memcg-bpf list'" in last_line(err)


def test_unload_needs_a_name_or_all() -> None:
    code, err = cli("unload")
    assert code == 2
    assert "name one policy or pass --all" in err


def test_bad_policy_name() -> None:
    code, err = cli("load", "telemetry", "--name", "a/b")
    assert code == 2
    assert "bad policy name 'a/b'" in err
