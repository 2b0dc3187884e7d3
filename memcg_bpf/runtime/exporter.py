"""`memcg-bpf exporter`: every loaded policy's telemetry and every memory cgroup's events, over HTTP.

Each scrape reads afresh: the snapshot of every policy loaded at that
moment (the families of `stats --prometheus`, see prom.py), and for every
cgroup of the cgroup2 tree with the memory controller its memory.events
(counters), memory.current (gauge) and memory.pressure stall time
(counters, seconds). A policy that cannot be read (unloaded during the
scrape, damaged pins) is left out of that scrape and counted in
memcg_bpf_exporter_errors_total.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.runtime import store
from memcg_bpf.runtime.cgroups import cgroup2_root, flat_keyed, pressure
from memcg_bpf.runtime.prom import policy_families
from memcg_bpf.runtime.stats import Reader

EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")


def memory_cgroups(root: Path) -> Iterator[tuple[str, Path]]:
    """(path from the root, directory) of every cgroup with memory.events; the root has none."""
    for dirpath, _dirs, files in os.walk(root):
        if "memory.events" in files:
            rel = os.path.relpath(dirpath, root)
            yield ("/" if rel == "." else "/" + rel), Path(dirpath)


def stall_seconds(path: Path) -> dict[str, float]:
    return {kind: values["total"] / 1e6 for kind, values in pressure(path).items()}


class Collector:
    """Collects on every scrape; holds nothing between scrapes except the Reader's BTF cache."""

    def __init__(self, reader: Reader, root: Path) -> None:
        self.reader = reader
        self.root = root
        self.errors = 0
        self.lock = threading.Lock()   # prometheus_client serves scrapes from several threads

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            yield from self._policies()
            yield from self._cgroups()
            errors = CounterMetricFamily("memcg_bpf_exporter_errors", "policies the exporter could not read")
            errors.add_metric([], self.errors)
            yield errors

    def _policies(self) -> Iterator[Metric]:
        families: list[Metric] = []
        for name in store.names(self.reader.root):
            try:
                families += list(policy_families(self.reader.snapshot(name)))
            except (MemcgBpfError, OSError):
                self.errors += 1
        yield from families

    def _cgroups(self) -> Iterator[Metric]:
        events = CounterMetricFamily("memcg_bpf_cgroup_memory_events", "memory.events of the cgroup",
                                     labels=["cgroup", "event"])
        current = GaugeMetricFamily("memcg_bpf_cgroup_memory_current_bytes", "memory.current of the cgroup",
                                    labels=["cgroup"])
        stall = CounterMetricFamily("memcg_bpf_cgroup_memory_stall_seconds",
                                    "memory.pressure total stall time (some: a task stalled; full: all did)",
                                    labels=["cgroup", "kind"])
        for path, directory in memory_cgroups(self.root):
            try:
                counts = flat_keyed(directory / "memory.events")
                usage = int((directory / "memory.current").read_text())
                stalls = stall_seconds(directory / "memory.pressure")
            except (OSError, ValueError, KeyError):
                continue   # removed during the scrape
            for event in EVENTS:
                if event in counts:
                    events.add_metric([path, event], counts[event])
            current.add_metric([path], usage)
            for kind, seconds in stalls.items():
                stall.add_metric([path, kind], seconds)
        yield from (events, current, stall)


def serve(reader: Reader, address: str, port: int, root: Path | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    registry = CollectorRegistry()
    registry.register(Collector(reader, root or cgroup2_root()))  # type: ignore[arg-type]
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise MemcgBpfError(f"cannot listen on {address}:{port}: {exc.strerror}: pick another --port") from exc
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
