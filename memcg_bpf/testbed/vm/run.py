"""Run one command in a fresh VM: stream its output, return its exit code.

Exit codes besides the command's own: 124 timeout, 125 kernel splat,
126 the VM could not run the command.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from memcg_bpf.testbed.vm.qemu import Machine, command
from memcg_bpf.testbed.vm.splat import Splat, find_splats

EXIT_TIMEOUT = 124
EXIT_SPLAT = 125
EXIT_VM_FAILED = 126

# Environment passed from the host to the command (besides PATH and HOME).
PASS_ENV = ("PYTHONPATH", "LANG", "LC_ALL", "TERM", "PYTHONDONTWRITEBYTECODE")
PASS_PREFIX = ("MEMCG_BPF_",)

Sink = Callable[[bytes], None]


@dataclass
class RunResult:
    exit_code: int
    command_exit_code: int | None
    boot_seconds: float | None
    seconds: float
    console: str
    splats: list[Splat] = field(default_factory=list)
    timed_out: bool = False
    problem: str = ""


def stream_to(stream: BinaryIO) -> Sink:
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()
    return write


def job_script(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    return (
        "#!/bin/sh\n"
        f"cd {shlex.quote(str(cwd))} || exit 126\n"
        f"export {exports}\n"
        "cat /proc/uptime > /run/memcg-bpf-vm/started\n"
        f"exec {' '.join(shlex.quote(a) for a in argv)}\n"
    )


def guest_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_PREFIX)}
    python_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{python_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env["HOME"] = os.environ.get("HOME", "/root")
    return env


def run(machine: Machine, argv: list[str], *, cwd: Path, timeout: float,
        stdout: Sink, stderr: Sink, console: Sink | None = None) -> RunResult:
    rundir = Path(tempfile.mkdtemp(prefix="memcg-bpf-vm-"))
    try:
        return _run(machine, argv, cwd, timeout, stdout, stderr, console, rundir)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def _run(machine: Machine, argv: list[str], cwd: Path, timeout: float,
         stdout: Sink, stderr: Sink, console_sink: Sink | None, rundir: Path) -> RunResult:
    job = rundir / "job"
    job.mkdir()
    (job / "cwd").write_text(str(cwd))
    (job / "job.sh").write_text(job_script(argv, cwd, guest_env()))
    fds = {}
    for name in ("out", "err"):
        for suffix in ("in", "out"):
            os.mkfifo(rundir / f"{name}.{suffix}")
        # O_RDWR: never blocks on open and never sees EOF while QEMU runs.
        fds[os.open(rundir / f"{name}.out", os.O_RDWR | os.O_NONBLOCK)] = stdout if name == "out" else stderr
    console_path = rundir / "console.log"
    started = time.monotonic()
    boot_seconds = None
    console_offset = 0
    timed_out = False
    qemu_log = rundir / "qemu.log"
    with qemu_log.open("wb") as qlog:
        proc = subprocess.Popen(command(machine, rundir, cwd), stdin=subprocess.DEVNULL,
                                stdout=qlog, stderr=subprocess.STDOUT)
        try:
            while True:
                exited = proc.poll() is not None
                readable, _, _ = select.select(list(fds), [], [], 0 if exited else 0.05)
                for fd in readable:
                    data = os.read(fd, 65536)
                    if data:
                        fds[fd](data)
                if console_sink and console_path.exists():
                    with console_path.open("rb") as f:
                        f.seek(console_offset)
                        data = f.read()
                        console_offset += len(data)
                        if data:
                            console_sink(data)
                if boot_seconds is None and (job / "started").exists():
                    boot_seconds = time.monotonic() - started
                if exited and not readable:
                    break
                if time.monotonic() - started > timeout:
                    timed_out = True
                    proc.kill()
                    proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for fd in fds:
                os.close(fd)
    seconds = time.monotonic() - started
    console = console_path.read_text(errors="replace") if console_path.exists() else ""
    splats = find_splats(console)
    rc_text = (job / "rc").read_text().strip() if (job / "rc").exists() else ""
    command_rc = int(rc_text) if rc_text else None
    result = RunResult(EXIT_VM_FAILED, command_rc, boot_seconds, seconds, console, splats, timed_out)
    if timed_out:
        result.exit_code = EXIT_TIMEOUT
        result.problem = f"the VM timed out after {timeout:g}s"
    elif splats:
        result.exit_code = EXIT_SPLAT
        result.problem = f"kernel splat: {splats[0].line}"
    elif command_rc is None:
        qemu_out = qemu_log.read_text(errors="replace").strip().splitlines()
        last = (qemu_out or console.strip().splitlines() or ["no output"])[-1]
        result.problem = f"the VM stopped before the command finished: {last}"
    else:
        result.exit_code = command_rc
    return result
