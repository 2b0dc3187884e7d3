"""The config fragment: parse it, and check that .config kept every option."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import UsageError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Option:
    name: str
    value: str  # 'n' for "is not set"

    def line(self) -> str:
        return f"# {self.name} is not set" if self.value == "n" else f"{self.name}={self.value}"


def parse_line(line: str) -> Option | None:
    line = line.strip()
    unset = _UNSET.match(line)
    if unset:
        return Option(unset.group(1), "n")
    if not line or line.startswith("#"):
        return None
    match = _SET.match(line)
    if not match:
        raise UsageError(f"bad config line {line!r}: write CONFIG_NAME=value or '# CONFIG_NAME is not set'")
    return Option(match.group(1), match.group(2))


def parse_fragment(text: str) -> dict[str, Option]:
    """Options in order; a later line for the same name wins."""
    options: dict[str, Option] = {}
    for line in text.splitlines():
        option = parse_line(line)
        if option:
            options[option.name] = option
    return options


def parse_override(spec: str) -> Option:
    """'CONFIG_X=n' or 'X=y' from the command line."""
    name, sep, value = spec.partition("=")
    if not sep or not value:
        raise UsageError(f"--config {spec!r}: write NAME=VALUE, e.g. --config CONFIG_MEMCG_BPF=n")
    if not name.startswith("CONFIG_"):
        name = "CONFIG_" + name
    option = parse_line(f"{name}={value}")
    assert option is not None
    return option


def render(options: dict[str, Option]) -> str:
    return "".join(option.line() + "\n" for option in options.values())


def read_config(path: Path) -> dict[str, str]:
    """name -> value of a .config; unset options are absent."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _SET.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def dropped_options(wanted: dict[str, Option], config: dict[str, str]) -> list[str]:
    """Fragment options whose value did not survive olddefconfig."""
    dropped = []
    for option in wanted.values():
        have = config.get(option.name, "n")
        if have != option.value:
            dropped.append(f"{option.line()} (got {have if have != 'n' else 'not set'})")
    return dropped
