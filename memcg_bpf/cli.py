"""The memcg-bpf command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

import click

from .errors import MemcgBpfError

F = TypeVar("F", bound=Callable[..., object])


def fail(message: str, code: int) -> None:
    click.echo(f"memcg-bpf: error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns MemcgBpfError into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MemcgBpfError as exc:
            fail(exc.message, exc.exit_code)
        return None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memcg-bpf")
def main() -> None:
    """Run memory-cgroup policies in BPF through the memcg_ops struct_ops.

    \b
    Typical session:
      memcg-bpf kernel build          # patched 6.12 test kernel (cached)
      memcg-bpf vm run -- uname -r    # boot it in QEMU and run a command
    """


@main.group(cls=Group)
def kernel() -> None:
    """Build the patched test kernel and its BPF tools."""


@kernel.command("build")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="A Linux 6.12 tree to build instead of Debian's linux-source-6.12.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Parallel make jobs (default: CPUs + 1).")
@click.option("--baseline", is_flag=True, help="Build the same config without the patch series.")
@click.option("--config", "overrides", multiple=True, metavar="CONFIG_X=V",
              help="Override one option of the fragment, e.g. CONFIG_MEMCG_BPF=n (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild even if the cache has this kernel.")
@click.option("--json", "as_json", is_flag=True, help="Print the artifact paths as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def kernel_build(source: Path | None, jobs: int | None, baseline: bool, overrides: tuple[str, ...],
                 force: bool, as_json: bool, quiet: bool) -> None:
    """Build bzImage, vmlinux, libbpf and bpftool, cached by inputs.

    Takes Debian's linux-source-6.12 (installed with apt if missing) or
    --source DIR, applies kernel_patch/series, configures allnoconfig plus
    kernel_patch/qemu.config, checks that every option survived, and
    builds. The result is cached under ~/.cache/memcg-bpf/kernels/ by a
    hash of the patches, the fragment and the source version, so a second
    run with nothing changed takes seconds.

    \b
    Examples:
      memcg-bpf kernel build
      memcg-bpf kernel build --baseline --json
      memcg-bpf kernel build --config CONFIG_MEMCG_BPF=n
    """
    from .kernel.api import build
    from .progress import Progress

    artifacts, from_cache = build(source, baseline=baseline, overrides=overrides, jobs=jobs or 0,
                                  force=force, progress=Progress(quiet=quiet or as_json))
    if as_json:
        click.echo(json.dumps({**artifacts.paths(), "key": artifacts.manifest["key"],
                               "variant": artifacts.manifest["variant"],
                               "kernel_version": artifacts.manifest["kernel_version"],
                               "cached": from_cache,
                               "build_seconds": artifacts.manifest["build_seconds"],
                               "warnings": artifacts.manifest["warnings"]}, indent=2))
        return
    for name, path in artifacts.paths().items():
        click.echo(f"{name:8} {path}")


@main.group(cls=Group)
def vm() -> None:
    """Boot the test kernel in QEMU."""


@vm.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--kernel", "kernel_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="bzImage to boot (default: the cached build for the current patches).")
@click.option("--baseline", is_flag=True, help="Boot the cached baseline kernel (no series).")
@click.option("--kvm", is_flag=True, help="Use KVM instead of TCG (hangs on nested hosts).")
@click.option("--cpus", type=click.IntRange(1, 8), default=2, show_default=True, help="vCPUs.")
@click.option("--memory", default="2G", show_default=True, help="Guest memory, e.g. 512M or 2G.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds before the VM is killed (exit 124).")
@click.option("--icount", is_flag=True, help="Instruction-exact time: -icount shift=0,sleep=off.")
@click.option("--console", is_flag=True, help="Also stream the kernel console to stderr.")
@click.option("--timing", is_flag=True, help="Print boot-to-command and total time to stderr.")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def vm_run(kernel_path: Path | None, baseline: bool, kvm: bool, cpus: int, memory: str, timeout: float,
           icount: bool, console: bool, timing: bool, argv: tuple[str, ...]) -> None:
    """Boot the kernel and run ARGV as root in the current directory.

    The guest sees the host root read-only over 9p, a fresh tmpfs /tmp,
    the current directory at the same path (writable), cgroup2 at
    /sys/fs/cgroup with the memory controller enabled for children,
    bpffs, debugfs and tracefs. Exits with the command's exit code, or
    124 on timeout, 125 if the kernel printed a splat (WARN, BUG, Oops,
    KASAN, lockdep, RCU stall, hung task), 126 if the VM failed.

    \b
    Examples:
      memcg-bpf vm run -- uname -r
      memcg-bpf vm run --cpus 2 --memory 1G -- python3 script.py
      memcg-bpf vm run --icount -- ./bench/pagefault 256
    """
    from .kernel.api import find_built
    from .paths import cache_dir
    from .vm.initramfs import initramfs
    from .vm.qemu import Machine, check_memory
    from .vm.run import run, stream_to

    bzimage = kernel_path or find_built(baseline=baseline).bzimage
    machine = Machine(kernel=bzimage, initrd=initramfs(cache_dir()), cpus=cpus,
                      memory=check_memory(memory), kvm=kvm, icount=icount)
    result = run(machine, list(argv), cwd=Path(os.getcwd()), timeout=timeout,
                 stdout=stream_to(sys.stdout.buffer), stderr=stream_to(sys.stderr.buffer),
                 console=stream_to(sys.stderr.buffer) if console else None)
    if timing:
        boot = f"{result.boot_seconds:.2f}s" if result.boot_seconds is not None else "n/a"
        click.echo(f"memcg-bpf: boot to command {boot}, total {result.seconds:.2f}s", err=True)
    if result.problem:
        for splat in result.splats:
            click.echo(splat.excerpt, err=True)
        fail(result.problem, result.exit_code)
    sys.exit(result.exit_code)
