"""A regular (non-editable) install works: the wheel carries the policies, the patch series and the
guest's init script, and the installed package finds them in site-packages, not in a checkout."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

from memcg_bpf.testbed.kernel.patches import read_series
from memcg_bpf.paths import REPO_ROOT

DEBIAN_PYTHON = Path("/usr/bin/python3")

# Run by the installed package, from a directory that is not a checkout.
PROBE = """
import json, tempfile
from pathlib import Path
from memcg_bpf.testbed.kernel.api import make_request
from memcg_bpf.testbed.kernel.source import given_source
from memcg_bpf.paths import patch_dir
from memcg_bpf.testbed.vm import initramfs

tree = Path(tempfile.mkdtemp())
(tree / "Makefile").write_text("VERSION = 6\\nPATCHLEVEL = 12\\nSUBLEVEL = 0\\n")
request = make_request(given_source(tree))
print(json.dumps({"patch_dir": str(patch_dir()), "variant": request.variant,
                  "patches": [p.name for p in request.series.patches],
                  "init": str(initramfs.INIT_SCRIPT),
                  "initramfs": str(initramfs.initramfs(Path(tempfile.mkdtemp())))}))
"""


def checkout_files(under: str) -> set[str]:
    listed = subprocess.run(["git", "ls-files", under], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def test_wheel_installs_and_finds_its_data_in_site_packages(fresh_checkout: Path, plain_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", str(venv)], env=plain_env, check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    dist = tmp_path / "dist"
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(fresh_checkout)], env=plain_env,
                   cwd=tmp_path, check=True, timeout=600)
    (wheel,) = dist.glob("memcg_bpf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {n for n in checkout_files("memcg_bpf") if n.endswith((".py", ".sh"))}
    wanted |= {"memcg_bpf/_data/" + n for n in checkout_files("bpf_progs") | checkout_files("kernel_patch")}
    assert wanted - names == set(), "missing from the wheel"

    subprocess.run([*pip, "install", str(wheel)], env=plain_env, cwd=tmp_path, check=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = next((venv / "lib").glob("python3*/site-packages/memcg_bpf"))

    policies = subprocess.run([str(venv / "bin" / "memcg-bpf"), "policies", "--json"], cwd=elsewhere,
                              env=plain_env, capture_output=True, text=True, check=False)
    assert policies.returncode == 0, policies.stderr
    found = json.loads(policies.stdout)
    assert sorted(p["name"] for p in found) == sorted(
        Path(n).name.removesuffix(".bpf.c") for n in checkout_files("bpf_progs") if n.endswith(".bpf.c"))
    assert {Path(p["source"]).parent for p in found} == {site / "_data" / "bpf_progs"}

    probe = subprocess.run([str(venv / "bin" / "python"), "-c", PROBE], cwd=elsewhere, env=plain_env,
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    resolved = json.loads(probe.stdout)
    assert resolved["patch_dir"] == str(site / "_data" / "kernel_patch")
    assert resolved["variant"] == "memcg-bpf"  # the bundled series, so the same cache key as a checkout's
    assert resolved["patches"] == [p.name for p in read_series(fresh_checkout / "kernel_patch").patches]
    assert resolved["init"] == str(site / "testbed" / "vm" / "init.sh")
    assert Path(resolved["initramfs"]).is_file()

    # What only makes sense in a checkout says so in one line.
    bench = subprocess.run([str(venv / "bin" / "memcg-bpf"), "bench", "--quick", "--out", str(tmp_path / "b")],
                           cwd=elsewhere, env=plain_env, capture_output=True, text=True, check=False)
    assert bench.returncode == 1
    assert bench.stderr.startswith("memcg-bpf: error: memcg-bpf bench needs a source checkout"), bench.stderr
    assert len(bench.stderr.splitlines()) == 1, bench.stderr
