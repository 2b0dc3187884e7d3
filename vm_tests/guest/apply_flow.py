"""Runs inside the VM: `memcg-bpf apply` through a sequence of files; one JSON object out.

    python3 -m vm_tests.guest.apply_flow
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from memcg_bpf.runtime.cgroups import CGROUP_ROOT
from memcg_bpf.testbed.guest import make_cgroup

from .cli_flow import cli

FLEET = """
[[policy]]
name = "fleet"
policy = "telemetry"
allow_override = true
"""


def boost(pages: int) -> str:
    return f"""
[[policy]]
name = "batch-boost"
policy = "reclaim_boost"
cgroup = "/batch"
knobs = {{ reclaim_pages = {pages} }}
"""


def links() -> dict[str, int]:
    out = cli("list", "--json")
    return {e["name"]: e["link_id"] for e in json.loads(out["stdout"])} if out["rc"] == 0 else {}


def main() -> None:
    make_cgroup("batch")
    files = Path(tempfile.mkdtemp())
    r: dict[str, Any] = {}

    def step(label: str, text: str, *flags: str) -> None:
        path = files / f"{label}.toml"
        path.write_text(text)
        r[label] = {**cli("apply", str(path), *flags), "links": links()}

    step("dry_run", FLEET + boost(256), "--dry-run")
    step("first", FLEET + boost(256))
    step("again", FLEET + boost(256))
    step("knob_changed", FLEET + boost(128))
    step("bad_knob", FLEET + boost(128).replace("reclaim_pages", "reclaim_pagez"))
    step("fleet_dropped", boost(128))
    step("empty", "")
    r["list_after"] = cli("list", "--json")
    (CGROUP_ROOT / "batch").rmdir()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
