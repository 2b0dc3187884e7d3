"""Shell completion for bash and zsh (click's), through the installed memcg-bpf command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).parent / "memcg-bpf"


def complete(mode: str, **env: str) -> str:
    return subprocess.run([str(COMMAND)], env={**os.environ, "_MEMCG_BPF_COMPLETE": mode, **env},
                          capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.mark.skipif(not COMMAND.exists(), reason="memcg-bpf is not installed in this environment")
def test_bash_and_zsh_scripts_and_a_completion() -> None:
    bash = complete("bash_source")
    assert "_memcg_bpf_completion()" in bash and "complete -o nosort -F _memcg_bpf_completion memcg-bpf" in bash
    assert complete("zsh_source").startswith("#compdef memcg-bpf")
    assert complete("bash_complete", COMP_WORDS="memcg-bpf ap", COMP_CWORD="1").split() == ["plain,apply"]
    assert complete("bash_complete", COMP_WORDS="memcg-bpf kernel pr", COMP_CWORD="2").split() == ["plain,prune"]
