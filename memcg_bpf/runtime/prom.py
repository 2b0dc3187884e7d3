"""A policy's snapshot in the Prometheus text format, through prometheus_client (API of 0.16, Debian 12).

Metric names are memcg_bpf_<policy>_<global> and
memcg_bpf_<policy>_<map>_<field> (struct members joined with '_'). Every
sample has a `policy` label; map entries add their key as labels (`cgroup`
and `cgroup_id` for cgroup keys, `key` or the key's fields otherwise) and
array elements an `index` label. The type of each field follows the rule in
memcg_bpf/runtime/fields.py: counters are Prometheus counters (samples named
..._total), timestamps, bools, floats and knobs are gauges, and cgroup ids,
enums and strings are not exported. `--textfile DIR` writes
DIR/memcg_bpf_<policy>.prom through a temporary file and a rename, so
node_exporter's textfile collector never reads half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.metrics_core import Metric

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.runtime.fields import Kind
from memcg_bpf.runtime.stats import Snapshot, metric_name


def _is_cgroup(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"cgroup_id", "path"}


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, dict[str, str], float]]:
    """(field name, extra labels, number) for every numeric leaf; cgroup ids and strings are left out."""
    if _is_cgroup(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{prefix}_{k}" if prefix else k, v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            for name, labels, number in _flatten(prefix, v):
                yield name, {"index": str(i), **labels}, number
    elif isinstance(value, (bool, int, float)):
        yield prefix, {}, float(value)


def _key_labels(key: Any) -> dict[str, str]:
    if _is_cgroup(key):
        return {"cgroup": key["path"] or "", "cgroup_id": str(key["cgroup_id"])}
    if isinstance(key, dict):
        labels: dict[str, str] = {}
        for k, v in key.items():
            sub = _key_labels(v)
            labels.update({_sanitize(f"{k}_{n}" if n != "key" else k): s for n, s in sub.items()})
        return labels
    return {"key": str(key)}


def _sanitize(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)


class _Collector:
    """The families of one snapshot, for a registry of its own."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        base = f"memcg_bpf_{_sanitize(snap.policy)}"
        families: dict[str, Metric] = {}

        def add(name: str, what: str, labels: dict[str, str], number: float) -> None:
            kind = snap.kinds.get(name, Kind.GAUGE)
            typ = kind.prometheus_type
            if typ is None:
                return
            metric = f"{base}_{_sanitize(name)}"
            if metric not in families:
                families[metric] = Metric(metric, f"memcg-bpf policy {snap.policy}: {what} ({kind.value})", typ)
            family = families[metric]
            sample = f"{family.name}_total" if typ == "counter" else family.name
            family.add_sample(sample, {"policy": snap.policy, **labels}, number)

        for name, labels, number in _flatten("", snap.globals):
            add(name, f"global {name}", labels, number)
        for map_name, rows in snap.maps.items():
            for row in rows:
                key_labels = _key_labels(row["key"])
                for name, labels, number in _flatten("", row["value"]):
                    what = f"map {map_name}" + (f" field {name}" if name else "")
                    add(metric_name(map_name, name), what, {**key_labels, **labels}, number)
        yield from families.values()


def policy_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one policy's snapshot (for a collector serving several)."""
    return _Collector(snapshot).collect()


def _registry(snapshot: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_Collector(snapshot))  # type: ignore[arg-type]
    return registry


def render(snapshot: Snapshot) -> str:
    """The text exposition format, with HELP and TYPE lines."""
    return generate_latest(_registry(snapshot)).decode()


def textfile_path(directory: Path, policy: str) -> Path:
    return directory / f"memcg_bpf_{_sanitize(policy)}.prom"


def write_textfile(snapshot: Snapshot, directory: Path) -> Path:
    """Write DIR/memcg_bpf_<policy>.prom atomically (temporary file, then rename) for node_exporter."""
    path = textfile_path(directory, snapshot.policy)
    if not directory.is_dir():
        raise MemcgBpfError(f"--textfile {directory}: no such directory")
    try:
        write_to_textfile(str(path), _registry(snapshot))
    except OSError as exc:
        raise MemcgBpfError(f"cannot write {path}: {exc.strerror}") from exc
    return path
