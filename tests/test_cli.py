"""The CLI's errors: one line naming the problem and the fix, exit code 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from memcg_bpf.cli import main
from memcg_bpf.testbed.vm.run import guest_env, job_script


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_bad_memory_size(tmp_path: Path) -> None:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"x")
    code, out = run("vm", "run", "--kernel", str(kernel), "--memory", "lots", "--", "true")
    assert code == 2
    assert "--memory 'lots': write a size such as 512M or 2G" in out


def test_missing_kernel_file() -> None:
    code, out = run("vm", "run", "--kernel", "/nonexistent/bzImage", "--", "true")
    assert code == 2
    assert "does not exist" in out


def test_vm_run_needs_a_command() -> None:
    code, out = run("vm", "run")
    assert code == 2
    assert "Missing argument" in out


def test_bad_config_override() -> None:
    code, out = run("kernel", "build", "--config", "MEMCG_BPF")
    assert code == 2
    assert "--config 'MEMCG_BPF': write NAME=VALUE" in out


def test_source_that_is_not_a_kernel(tmp_path: Path) -> None:
    code, out = run("kernel", "build", "--source", str(tmp_path))
    assert code == 2
    assert f"{tmp_path} is not a kernel tree" in out


def test_source_of_another_version(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 6\nSUBLEVEL = 30\n")
    code, out = run("kernel", "build", "--source", str(tmp_path))
    assert code == 2
    assert "is Linux 6.6.30, the series is for 6.12" in out


def test_help_has_examples() -> None:
    commands = (["kernel", "build"], ["vm", "run"], ["build"], ["load"], ["unload"], ["list"], ["stats"],
                ["policies"], ["bench"])
    for command in commands:
        code, out = run(*command, "--help")
        assert code == 0
        assert "Examples:" in out and "memcg-bpf " in out


def test_job_script_quotes_arguments(tmp_path: Path) -> None:
    script = job_script(["printf", "%s|", "a b", "it's", "$HOME"], tmp_path, {"X": "1 2"})
    # Run it on the host with the guest-only path redirected: same quoting, same result.
    script = script.replace("/run/memcg-bpf-vm/started", str(tmp_path / "started"))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "a b|it's|$HOME|"


def test_guest_env_puts_this_python_first(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMCG_BPF_LIBBPF", "/x/libbpf.so")
    monkeypatch.setenv("SECRET_TOKEN", "nope")
    env = guest_env()
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert env["MEMCG_BPF_LIBBPF"] == "/x/libbpf.so"
    assert "SECRET_TOKEN" not in env


def test_policies_lists_bundled_policies_with_knobs() -> None:
    code, out = run("policies")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["noop", "priority", "proactive", "reclaim_boost", "telemetry"]
    assert "  reclaim_pages (__u32, default 128): pages to reclaim per failed charge, 1..512 (default 128)" in lines
    code, out = run("policies", "--json")
    policies = {p["name"]: p for p in json.loads(out)}
    assert policies["reclaim_boost"]["knobs"][0]["range"] == [1, 512]
    assert policies["telemetry"]["knobs"] == []
