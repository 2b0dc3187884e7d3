"""Runs inside the VM: the exporter serving a loaded policy and the cgroups, scraped over loopback.

    python3 -m vm_tests.guest.exporter_flow 'JSON-ARGS'   (memhog)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

from memcg_bpf.runtime.cgroups import CGROUP_ROOT
from memcg_bpf.testbed.guest import make_cgroup, swap_on_zram

from .cli_flow import cli
from .scenarios import start_in_cgroup

PORT = 9431


def scrape() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=30) as response:
        return response.read().decode()


def wait_for_port(proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exporter exited with {proc.returncode}")
        try:
            scrape()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("exporter did not answer within 60 s")


def main() -> None:
    args = json.loads(sys.argv[1])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    swap_on_zram()
    demo = make_cgroup("demo", memory__max="16M")
    r: dict[str, Any] = {"load": cli("load", "telemetry")}
    hog = start_in_cgroup(demo, [args["memhog"], "24"])
    hog.communicate(timeout=300)
    r["hog_rc"] = hog.returncode
    exporter = subprocess.Popen([sys.executable, "-m", "memcg_bpf", "exporter", "--port", str(PORT)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(exporter)
        started = time.monotonic()
        r["with_policy"] = scrape()
        r["scrape_seconds"] = round(time.monotonic() - started, 3)
        r["unload"] = cli("unload", "telemetry")
        r["without_policy"] = scrape()
        r["second_exporter"] = cli("exporter", "--port", str(PORT))   # the port is taken
    finally:
        exporter.terminate()
        r["exporter_rc"] = exporter.wait(timeout=30)
        r["exporter_stderr"] = exporter.stderr.read() if exporter.stderr else ""
    (CGROUP_ROOT / "demo").rmdir()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
