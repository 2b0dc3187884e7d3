"""Runs inside the VM: `memcg-bpf top --once` while memhog charges a limited cgroup.

    python3 -m vm_tests.guest.top_flow 'JSON-ARGS'   (memhog)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from memcg_bpf.runtime.cgroups import CGROUP_ROOT, flat_keyed
from memcg_bpf.testbed.guest import make_cgroup, swap_on_zram

from .cli_flow import cli
from .scenarios import start_in_cgroup


def main() -> None:
    args = json.loads(sys.argv[1])
    swap_on_zram()
    demo = make_cgroup("demo", memory__max="16M")
    r: dict[str, Any] = {"load": cli("load", "telemetry")}
    # memhog maps, touches and unmaps 24 MiB for 30 s: the frames are taken while it charges past the limit.
    hog = start_in_cgroup(demo, [args["memhog"], "24", "30"])
    # Frames only once it charges past the limit: on a slow machine the hog can still be starting
    # when top samples (rates all 0, 200 KiB charged, seen once).
    deadline = time.monotonic() + 120
    while flat_keyed(demo / "memory.events").get("max", 0) == 0 and hog.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    r["json"] = cli("top", "telemetry", "--once", "--json", "--interval", "1")
    r["text"] = cli("top", "telemetry", "--once", "--interval", "1")
    hog.communicate(timeout=600)
    r["hog_rc"] = hog.returncode
    r["unload"] = cli("unload", "telemetry")
    r["not_loaded"] = cli("top", "telemetry", "--once")
    (CGROUP_ROOT / "demo").rmdir()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
