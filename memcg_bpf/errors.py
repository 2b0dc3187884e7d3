"""Exceptions that carry a one-line, user-facing message and an exit code."""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class MemcgBpfError(Exception):
    """A failure to report to the user as one line, then exit non-zero."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UsageError(MemcgBpfError):
    """Bad input from the user: exit code 2."""

    exit_code = EXIT_USAGE


class PolicyGone(MemcgBpfError):
    """The policy was unloaded while it was being read."""

    def __init__(self, name: str) -> None:
        super().__init__(f"policy {name} was unloaded")


class DamagedPolicy(MemcgBpfError):
    """A policy's pin directory is not what `load` leaves: a pin missing, of the wrong kind, or garbage."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"policy {name} cannot be read: {problem}; remove it with 'memcg-bpf unload {name}'")
