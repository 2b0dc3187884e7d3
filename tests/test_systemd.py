"""contrib/systemd/memcg-bpf.service: systemd accepts it, and the commands it runs exist."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from memcg_bpf.cli import main
from memcg_bpf.paths import REPO_ROOT

UNIT = REPO_ROOT / "contrib" / "systemd" / "memcg-bpf.service"


def commands() -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1]) for line in UNIT.read_text().splitlines()
            if line.startswith(("ExecStart=", "ExecReload=", "ExecStop="))]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that the executable exists: point it at one that does.
    stub = tmp_path / "memcg-bpf"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/memcg-bpf", str(stub)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_unit_runs_commands_that_exist() -> None:
    seen = []
    for argv in commands():
        assert argv[0] == "/usr/local/bin/memcg-bpf"
        subcommand = argv[1]
        result = CliRunner().invoke(main, [subcommand, "--help"])
        assert result.exit_code == 0, (argv, result.output)
        seen.append(argv[1:])
    assert seen == [["apply", "/etc/memcg-bpf/policies.toml"]] * 2 + [["unload", "--all"]]
