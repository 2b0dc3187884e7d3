"""`stats --watch`: a snapshot every few seconds with the rates of counters, until Ctrl-C or unload."""

from __future__ import annotations

import time
from typing import Callable

from memcg_bpf.errors import PolicyGone
from memcg_bpf.runtime.store import NotLoaded
from memcg_bpf.runtime.stats import Reader, Snapshot, numbers

Show = Callable[[Snapshot, "dict[tuple[str, ...], float] | None"], None]


def watch(reader: Reader, name: str, interval: float, show: Show, *,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Show snapshots of policy name until interrupted; PolicyGone once it is unloaded meanwhile."""
    snapshot = reader.snapshot(name)
    before, then = numbers(snapshot), clock()
    show(snapshot, None)
    try:
        while True:
            sleep(interval)
            try:
                snapshot = reader.snapshot(name)
            except NotLoaded:
                raise PolicyGone(name) from None
            now, current = clock(), numbers(snapshot)
            rates = {k: (v - before.get(k, 0)) / (now - then) for k, v in current.items()}
            before, then = current, now
            show(snapshot, rates)
    except KeyboardInterrupt:
        pass
