"""The QEMU command line for one run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError, UsageError


@dataclass(frozen=True)
class Machine:
    kernel: Path
    initrd: Path
    cpus: int = 2
    memory: str = "2G"
    kvm: bool = False
    icount: bool = False
    cmdline: str = ""
    # TCG runs all vCPUs round-robin on one host thread ("single"), or one thread per vCPU
    # ("multi": faster, but QEMU 7.2 then misses cross-vCPU code changes; see README).
    tcg_thread: str = "single"


def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise MemcgBpfError("qemu-system-x86_64 is missing: run 'apt-get install qemu-system-x86'")
    return path


def check_memory(size: str) -> str:
    if not size or not (size[:-1].isdigit() and size[-1] in "MG" or size.isdigit()):
        raise UsageError(f"--memory {size!r}: write a size such as 512M or 2G")
    return size


def command(machine: Machine, rundir: Path, cwd: Path) -> list[str]:
    """QEMU argv: 3 serial ports (console, stdout, stderr), 9p shares, no devices else."""
    def share(tag: str, path: Path, readonly: bool) -> list[str]:
        ro = ",readonly=on" if readonly else ""
        return ["-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap{ro}",
                "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]

    # With -icount, no host randomness either (RDRAND/RDSEED), so that boots of one kernel run alike.
    cpu = "max,rdrand=off,rdseed=off" if machine.icount else "max"
    accel = (["-accel", "kvm", "-cpu", "host"] if machine.kvm else
             ["-accel", f"tcg,thread={'single' if machine.icount else machine.tcg_thread}", "-cpu", cpu])
    icount = ["-icount", "shift=0,sleep=off"] if machine.icount else []
    # tsc=reliable: under TCG load the clocksource watchdog would otherwise
    # fall back to jiffies, and guest timestamps would have 4 ms resolution.
    append = f"console=ttyS0 panic=-1 tsc=reliable rdinit=/init {machine.cmdline}".strip()
    return [
        qemu_binary(), "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
        "-machine", "pc", *accel, *icount,
        "-smp", str(machine.cpus), "-m", machine.memory,
        "-kernel", str(machine.kernel), "-initrd", str(machine.initrd), "-append", append,
        "-serial", f"file:{rundir / 'console.log'}",
        "-chardev", f"pipe,id=out,path={rundir / 'out'}", "-serial", "chardev:out",
        "-chardev", f"pipe,id=err,path={rundir / 'err'}", "-serial", "chardev:err",
        *share("hostroot", Path("/"), True),
        *share("cwd", cwd, False),
        *share("job", rundir / "job", False),
    ]
