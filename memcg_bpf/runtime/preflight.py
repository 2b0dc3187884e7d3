"""Checks before touching the kernel: memcg_ops present, capabilities, bpffs."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from memcg_bpf.bpf.btf import VMLINUX_BTF
from memcg_bpf.errors import MemcgBpfError

BPFFS = Path("/sys/fs/bpf")
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

MEMCG_OPS_MARK = b"\0bpf_struct_ops_memcg_ops\0"


def no_memcg_ops() -> str:
    return (f"the running kernel ({os.uname().release}) has no memcg_ops struct_ops: boot a kernel with the "
            "memcg-bpf patches, or try it in the test VM: memcg-bpf vm run -- memcg-bpf ...")


@functools.lru_cache(maxsize=None)
def kernel_has_memcg_ops(btf_path: Path = VMLINUX_BTF) -> bool:
    """Whether the BTF file has memcg_ops; read once per file and process (load asks three times)."""
    try:
        data = btf_path.read_bytes()
    except OSError:
        return False
    return MEMCG_OPS_MARK in data


def require_memcg_ops() -> None:
    if not kernel_has_memcg_ops():
        raise MemcgBpfError(no_memcg_ops())


def effective_caps(status: Path = Path("/proc/self/status")) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def require_caps(command: str = "load") -> None:
    """CAP_SYS_ADMIN (registering, and looking programs up by id), CAP_BPF and CAP_PERFMON."""
    caps = effective_caps()
    missing = [name for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_BPF, "CAP_BPF"),
                                      (CAP_PERFMON, "CAP_PERFMON")) if not caps & (1 << bit)]
    if missing:
        raise MemcgBpfError(f"memcg-bpf {command} needs {', '.join(missing)}: "
                            "run it as root (in the initial user namespace)")


def bpffs_mounted(mounts: Path = Path("/proc/self/mounts")) -> bool:
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == str(BPFFS) and fields[2] == "bpf":
            return True
    return False


def require_bpffs() -> None:
    if not bpffs_mounted():
        raise MemcgBpfError(f"bpffs is not mounted at {BPFFS}: run 'mount -t bpf bpf {BPFFS}'")


def require_all(command: str = "load") -> None:
    """What every runtime command (load, unload, list, stats) needs, checked in the order a user fixes them."""
    require_caps(command)
    require_memcg_ops()
    require_bpffs()
