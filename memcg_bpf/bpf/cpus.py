"""CPU lists from sysfs: how many CPUs are possible and online."""

from __future__ import annotations

from pathlib import Path

CPU_DIR = Path("/sys/devices/system/cpu")


def count(cpu_list: str) -> int:
    """The number of CPUs in a kernel CPU list such as "0-3,8"."""
    total = 0
    for part in cpu_list.strip().split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def possible() -> int:
    return count((CPU_DIR / "possible").read_text())


def online() -> int:
    return count((CPU_DIR / "online").read_text())
