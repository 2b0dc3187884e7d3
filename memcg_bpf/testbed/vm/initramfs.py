"""The VM's initramfs: busybox-static and init.sh, as a cached cpio archive."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError

BUSYBOX = Path("/bin/busybox")
INIT_SCRIPT = Path(__file__).with_name("init.sh")


def find_busybox() -> Path:
    for candidate in (BUSYBOX, Path("/usr/bin/busybox")):
        if candidate.exists():
            return candidate
    raise MemcgBpfError("busybox is missing: run 'apt-get install busybox-static'")


def initramfs(cache: Path) -> Path:
    """Build (once per init.sh and busybox) and return the initramfs path."""
    busybox = find_busybox()
    h = hashlib.sha256(INIT_SCRIPT.read_bytes())
    h.update(busybox.read_bytes())
    target = cache / "initramfs" / f"initramfs-{h.hexdigest()[:16]}.cpio.gz"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memcg-bpf-initramfs-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        shutil.copy2(INIT_SCRIPT, root / "init")
        (root / "init").chmod(0o755)
        for name in ("dev", "proc", "sys", "newroot", "job"):
            (root / name).mkdir()
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        result = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                                input="\n".join(names).encode(), capture_output=True, check=False)
        if result.returncode != 0:
            raise MemcgBpfError(f"cpio failed: {result.stderr.decode(errors='replace').strip()}: "
                                "run 'apt-get install cpio'")
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_bytes(gzip.compress(result.stdout, compresslevel=6))
    tmp_target.rename(target)
    return target
