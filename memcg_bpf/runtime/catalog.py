"""Bundled policies (bpf_progs/*.bpf.c): find them, describe them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import UsageError
from memcg_bpf.paths import bundled_policy_dir

_KNOB = re.compile(r"^const volatile\s+(?P<type>[\w ]+?)\s+(?P<name>\w+)(?P<dims>\[\w+\])?\s*(?:=\s*(?P<default>[^;]+))?;",
                   re.M)
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


@dataclass(frozen=True)
class KnobDoc:
    name: str
    type: str
    default: str
    help: str
    range: tuple[int, int] | None


@dataclass(frozen=True)
class Policy:
    name: str
    source: Path
    description: str
    knobs: tuple[KnobDoc, ...]


def _header_comment(text: str) -> list[str]:
    match = re.search(r"/\*(.*?)\*/", text, re.S)
    if not match:
        return []
    return [line.strip().lstrip("*").rstrip() for line in match.group(1).splitlines()]


def describe(source: Path) -> Policy:
    text = source.read_text()
    name = source.name.removesuffix(".bpf.c")
    comment = _header_comment(text)
    description = next((line.split(":", 1)[1].strip() for line in comment
                        if line.strip().startswith(f"{name}:")), "")
    helps: dict[str, str] = {}
    in_knobs = False
    for line in comment:
        stripped = line.strip()
        if stripped.startswith("Knobs:"):
            in_knobs = True
            continue
        if in_knobs:
            if not stripped or stripped.endswith(":") or stripped.startswith("Cost:"):
                break
            parts = stripped.split(None, 1)
            if len(parts) == 2:
                helps[parts[0]] = parts[1]
    knobs = []
    for match in _KNOB.finditer(text):
        knob_name = match.group("name")
        help_text = helps.get(knob_name, "")
        found = _RANGE.search(help_text)
        knobs.append(KnobDoc(
            name=knob_name,
            type=match.group("type") + (match.group("dims") or ""),
            default=(match.group("default") or ("none" if match.group("dims") else "0")).strip(),
            help=help_text,
            range=(int(found.group(1)), int(found.group(2))) if found else None,
        ))
    return Policy(name, source, description, tuple(knobs))


def bundled() -> list[Policy]:
    return [describe(p) for p in sorted(bundled_policy_dir().glob("*.bpf.c"))]


def find(name: str) -> Policy:
    source = bundled_policy_dir() / f"{name}.bpf.c"
    if not source.is_file():
        names = ", ".join(p.name for p in bundled())
        raise UsageError(f"unknown policy {name!r}: bundled policies are {names} (or pass FILE.bpf.c / FILE.bpf.o)")
    return describe(source)
