from __future__ import annotations

import pytest

from memcg_bpf.errors import UsageError
from memcg_bpf.testbed.kernel import kconfig


def test_fragment_keeps_order_and_last_value_wins() -> None:
    options = kconfig.parse_fragment("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_A=n\n")
    assert list(options) == ["CONFIG_A", "CONFIG_B", "CONFIG_C"]
    assert options["CONFIG_A"].value == "n"
    assert options["CONFIG_B"].line() == "# CONFIG_B is not set"
    assert options["CONFIG_C"].line() == 'CONFIG_C="x"'


def test_bad_fragment_line_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="bad config line 'MEMCG=y'"):
        kconfig.parse_fragment("MEMCG=y\n")


def test_dropped_options_names_what_did_not_survive() -> None:
    wanted = kconfig.parse_fragment("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=21\n")
    dropped = kconfig.dropped_options(wanted, {"CONFIG_A": "y", "CONFIG_C": "y", "CONFIG_D": "60"})
    assert dropped == [
        "CONFIG_B=y (got not set)",
        "# CONFIG_C is not set (got y)",
        "CONFIG_D=21 (got 60)",
    ]


def test_override_accepts_short_names_and_rejects_garbage() -> None:
    assert kconfig.parse_override("MEMCG_BPF=n").line() == "# CONFIG_MEMCG_BPF is not set"
    assert kconfig.parse_override("CONFIG_X=y").line() == "CONFIG_X=y"
    with pytest.raises(UsageError, match="write NAME=VALUE"):
        kconfig.parse_override("CONFIG_X")


def test_read_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / ".config"
    path.write_text("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=3\n")
    assert kconfig.read_config(path) == {"CONFIG_A": "y", "CONFIG_C": "3"}
