"""The memcg-bpf command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from memcg_bpf.errors import MemcgBpfError, UsageError

if TYPE_CHECKING:
    from memcg_bpf.bpf.libbpf import Libbpf

def fail(message: str, code: int) -> None:
    click.echo(f"memcg-bpf: error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns MemcgBpfError (and an OSError nobody expected) into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MemcgBpfError as exc:
            if exc.details:
                click.echo(exc.details.rstrip(), err=True)
            fail(exc.message, exc.exit_code)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            hint = "; run memcg-bpf as root" if isinstance(exc, PermissionError) else ""
            fail(f"{where}{exc.strerror or exc}{hint}", 1)
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
@click.option("--variant", type=click.Choice(["test", "debug", "bench"]), default="test", show_default=True,
              help="test: the fragment (lockdep, PROVE_RCU); debug: plus KASAN and kmemleak; "
                   "bench: without lock debugging.")
@click.option("--config", "overrides", multiple=True, metavar="CONFIG_X=V",
              help="Override one option of the fragment, e.g. CONFIG_MEMCG_BPF=n (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild even if the cache has this kernel.")
@click.option("--json", "as_json", is_flag=True, help="Print the artifact paths as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def kernel_build(source: Path | None, jobs: int | None, baseline: bool, variant: str, overrides: tuple[str, ...],
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
      memcg-bpf kernel build --variant debug
    """
    from memcg_bpf.testbed.kernel.api import build, variant_overrides
    from memcg_bpf.progress import Progress

    artifacts, from_cache = build(source, baseline=baseline, overrides=variant_overrides(variant) + overrides,
                                  jobs=jobs or 0,
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


@kernel.command("cache")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def kernel_cache(as_json: bool) -> None:
    """List the kernel cache: build trees and built kernels, least recently used first.

    A tree (about 4.5 GB) keeps a variant's build output so the next build
    is incremental; a kernel (about 170 MB) is one build's artifacts, found
    again by the hash of its inputs. 'memcg-bpf kernel prune' removes what
    has not been used for a while.

    \b
    Examples:
      memcg-bpf kernel cache
      memcg-bpf kernel cache --json
    """
    import time
    from memcg_bpf.paths import cache_dir
    from memcg_bpf.testbed.kernel import cache as kcache

    now = time.time()
    found = kcache.entries(cache_dir())
    if as_json:
        click.echo(json.dumps({"cache": str(cache_dir()), "entries": [e.as_json(now) for e in found],
                               "bytes": sum(e.size for e in found)}, indent=2))
        return
    for e in found:
        click.echo(f"{e.kind:6} {kcache.human(e.size):>10}  idle {(now - e.last_used) / kcache.DAY:5.1f} d  "
                   f"{e.variant:24} {e.path}")
    click.echo(f"total  {kcache.human(sum(e.size for e in found)):>10}  in {cache_dir()}")


@kernel.command("prune")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              metavar="DAYS", help="Remove what has not been built or booted for this many days (0: everything).")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be removed, remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def kernel_prune(days: float, dry_run: bool, as_json: bool) -> None:
    """Free disk space: remove cached build trees and kernels unused for DAYS.

    Every build and every boot marks what it uses, so the current kernels
    stay. A pruned kernel is rebuilt on demand; a pruned tree makes that
    build a full one (about 6 minutes) instead of an incremental one.

    \b
    Examples:
      memcg-bpf kernel prune --dry-run
      memcg-bpf kernel prune --older-than 3
      memcg-bpf kernel prune --older-than 0      # empty the kernel cache
    """
    import time
    from memcg_bpf.paths import cache_dir
    from memcg_bpf.testbed.kernel import cache as kcache

    now = time.time()
    doomed = kcache.idle(kcache.entries(cache_dir()), days, now)
    for e in doomed:
        if not dry_run:
            kcache.remove(e)
        if not as_json:
            click.echo(f"{'would remove' if dry_run else 'removed'} {e.kind} {e.variant} "
                       f"({kcache.human(e.size)}, idle {(now - e.last_used) / kcache.DAY:.1f} d) {e.path}")
    freed = sum(e.size for e in doomed)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "removed": [e.as_json(now) for e in doomed], "bytes": freed},
                              indent=2))
    else:
        click.echo(f"{'would free' if dry_run else 'freed'} {kcache.human(freed)} "
                   f"({len(doomed)} entries unused for {days:g} days or more)")


@main.group("libbpf", cls=Group)
def libbpf_group() -> None:
    """The libbpf (>= 1.2) that load, unload, list and stats use."""


@libbpf_group.command("build")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="A Linux source tree with tools/lib/bpf (default: Debian's linux-source-6.12, "
                   "installed with apt and unpacked if missing).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Parallel make jobs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def libbpf_build(source: Path | None, jobs: int | None, quiet: bool) -> None:
    """Build libbpf from a kernel tree once and install it into the cache.

    Debian 12's libbpf (1.1) predates struct_ops links. The runtime
    commands look for libbpf in this order: $MEMCG_BPF_LIBBPF, the newest
    one in ~/.cache/memcg-bpf/libbpf/ (this command, or any 'kernel build',
    puts it there), the system's libbpf.so.1 if it is >= 1.2. They never
    build or download anything themselves.

    \b
    Examples:
      memcg-bpf libbpf build
      memcg-bpf libbpf build --source ~/linux
    """
    from memcg_bpf.testbed.kernel import libbpf as libbpf_builder
    from memcg_bpf.testbed.kernel.api import resolve_source
    from memcg_bpf.testbed.kernel.build import default_jobs
    from memcg_bpf.progress import Progress

    progress = Progress(quiet=quiet)
    tree = resolve_source(source, progress).path
    click.echo(str(libbpf_builder.build(tree, jobs or default_jobs(), progress)))


@libbpf_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def libbpf_show(as_json: bool) -> None:
    """Which libbpf and headers the runtime commands would use.

    \b
    Examples:
      memcg-bpf libbpf show --json
    """
    from memcg_bpf.bpf.libbpf import Libbpf
    from memcg_bpf.runtime.locate import find_include, find_libbpf

    path = find_libbpf()
    version = ".".join(map(str, Libbpf(path).version))
    try:
        include: str | None = str(find_include())
    except MemcgBpfError:
        include = None
    if as_json:
        click.echo(json.dumps({"libbpf": str(path), "version": version, "include": include}, indent=2))
    else:
        click.echo(f"libbpf  {path} ({version})\ninclude {include or 'none (run memcg-bpf libbpf build)'}")


@main.group(cls=Group)
def vm() -> None:
    """Boot the test kernel in QEMU."""


@vm.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--kernel", "kernel_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="bzImage to boot (default: the cached build for the current patches).")
@click.option("--baseline", is_flag=True, help="Boot the cached baseline kernel (no series).")
@click.option("--variant", type=click.Choice(["test", "debug", "bench"]), default="test", show_default=True,
              help="Which cached kernel variant to boot (see 'kernel build --variant').")
@click.option("--kvm", is_flag=True, help="Use KVM instead of TCG (hangs on nested hosts).")
@click.option("--cpus", type=click.IntRange(1, 8), default=2, show_default=True, help="vCPUs.")
@click.option("--memory", default="2G", show_default=True, help="Guest memory, e.g. 512M or 2G.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds before the VM is killed (exit 124).")
@click.option("--icount", is_flag=True, help="Instruction-exact time: -icount shift=0,sleep=off.")
@click.option("--tcg-thread", type=click.Choice(["single", "multi"]), default="single", show_default=True,
              help="TCG: all vCPUs round-robin on one host thread, or one thread each (faster, but QEMU 7.2 "
                   "can then crash the guest when the kernel patches its code: static keys, ftrace).")
@click.option("--append", "cmdline", default="", metavar="ARGS",
              help="More kernel command line, e.g. 'nokaslr norandmaps'.")
@click.option("--console", is_flag=True, help="Also stream the kernel console to stderr.")
@click.option("--timing", is_flag=True, help="Print boot-to-command and total time to stderr.")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def vm_run(kernel_path: Path | None, baseline: bool, variant: str, kvm: bool, cpus: int, memory: str,
           timeout: float, icount: bool, tcg_thread: str, cmdline: str, console: bool, timing: bool,
           argv: tuple[str, ...]) -> None:
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
      memcg-bpf vm run --icount --append "nokaslr norandmaps" -- ./chargepath anon 64 5
    """
    from memcg_bpf.testbed.kernel.api import find_built, variant_overrides
    from memcg_bpf.paths import cache_dir
    from memcg_bpf.testbed.vm.initramfs import initramfs
    from memcg_bpf.testbed.vm.qemu import Machine, check_memory
    from memcg_bpf.testbed.vm.run import run, stream_to

    bzimage = kernel_path or find_built(baseline=baseline, overrides=variant_overrides(variant)).bzimage
    machine = Machine(kernel=bzimage, initrd=initramfs(cache_dir()), cpus=cpus,
                      memory=check_memory(memory), kvm=kvm, icount=icount, cmdline=cmdline, tcg_thread=tcg_thread)
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


# -- policies: build, load, unload, list, stats ---------------------------------
LEFT_BY = {"staging": " (what an interrupted load left)", "unloading": " (what an interrupted unload left)"}


def _libbpf() -> "Libbpf":
    from memcg_bpf.bpf.libbpf import Libbpf
    from memcg_bpf.runtime.locate import find_libbpf
    return Libbpf(find_libbpf())


def _sources(targets: tuple[str, ...]) -> list[Path]:
    from memcg_bpf.runtime import catalog
    from memcg_bpf.errors import UsageError
    if not targets:
        return [p.source for p in catalog.bundled()]
    out = []
    for target in targets:
        if target.endswith(".c"):
            path = Path(target)
            if not path.is_file():
                raise UsageError(f"{target}: no such file")
            out.append(path)
        else:
            out.append(catalog.find(target).source)
    return out


def _compile(bpf: "Libbpf", targets: tuple[str, ...], btf: Path | None, out_dir: Path | None) -> list[Path]:
    from memcg_bpf.runtime.compile import Toolchain, build_objects, default_btf
    from memcg_bpf.runtime.locate import find_include
    from memcg_bpf.paths import cache_dir
    from memcg_bpf.runtime.toolchain import find_clang
    tools = Toolchain(find_clang(), find_include())
    return build_objects(bpf, _sources(targets), default_btf(btf), cache_dir(), tools, out_dir)


@main.command("build")
@click.argument("targets", nargs=-1, metavar="[POLICY|FILE.bpf.c]...")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write objects here (default: the cache, keyed by content).")
@click.option("--btf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kernel BTF to compile against (default: /sys/kernel/btf/vmlinux, else the built vmlinux).")
@click.option("--json", "as_json", is_flag=True, help="Print the object paths as JSON.")
def build_cmd(targets: tuple[str, ...], out_dir: Path | None, btf: Path | None, as_json: bool) -> None:
    """Compile policies with clang against a vmlinux.h made from kernel BTF.

    With no argument, compiles every bundled catalog. Objects are cached by
    the content of the source, its headers and the BTF.

    \b
    Examples:
      memcg-bpf build telemetry
      memcg-bpf build my_policy.bpf.c -o out/
      memcg-bpf build --btf ~/.cache/memcg-bpf/kernels/KEY/vmlinux
    """
    objects = _compile(_libbpf(), targets, btf, out_dir)
    if as_json:
        click.echo(json.dumps([str(o) for o in objects], indent=2))
    else:
        for obj in objects:
            click.echo(str(obj))


@main.command("load")
@click.argument("target", metavar="POLICY|FILE.bpf.o")
@click.option("--name", help="Name to load it under (default: the policy or file name).")
@click.option("--set", "sets", multiple=True, metavar="KNOB=VALUE",
              help="Set a const volatile knob before load (repeatable).")
@click.option("--btf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BTF to compile a bundled policy against (default: the running kernel's).")
@click.option("--replace", metavar="NAME",
              help="Take over the registration of loaded policy NAME in one step (no moment without a policy).")
@click.option("--cgroup", "cgroup", metavar="CGROUP",
              help="Attach to this cgroup2 cgroup ('/batch', or a path under the cgroup2 mount) "
                   "instead of the root (the whole machine).")
@click.option("--allow-override", is_flag=True,
              help="Let policies be attached below this one; they then govern their own subtrees.")
@click.option("--json", "as_json", is_flag=True, help="Print what was loaded as JSON.")
def load_cmd(target: str, name: str | None, sets: tuple[str, ...], btf: Path | None, replace: str | None,
             cgroup: str | None, allow_override: bool, as_json: bool) -> None:
    """Register a policy's memcg_ops and pin it under /sys/fs/bpf/memcg-bpf/NAME.

    The policy stays active after the command exits, until 'unload'.
    A bundled policy is compiled on first use. Registering needs
    CAP_SYS_ADMIN.

    \b
    Where it applies: a policy is attached to one cgroup (--cgroup; the
    root, so the whole machine, by default) and governs it and every
    cgroup below it that has no policy attached closer to it. So
    siblings can run different policies. One policy per cgroup:
    --replace swaps a loaded one for this one atomically
    (BPF_LINK_UPDATE) at the same cgroup and removes the old one's pins;
    once it returns the old policy runs nowhere. A policy can be
    attached below another only if that one was loaded with
    --allow-override. Only the policy governing the cgroup whose limit
    was hit sets the reclaim target; policies below it just observe.
    Removing the cgroup detaches its policy ('list' shows it inert).

    \b
    Examples:
      memcg-bpf load telemetry
      memcg-bpf load reclaim_boost --set reclaim_pages=256 --set cgroup_ids=/batch
      memcg-bpf load ./my_policy.bpf.o --name mine
      memcg-bpf load reclaim_boost --set reclaim_pages=512 --replace reclaim_boost
      memcg-bpf load telemetry --cgroup / --allow-override --name fleet
      memcg-bpf load reclaim_boost --cgroup /batch --name batch
    """
    from memcg_bpf.runtime import attach, catalog
    from memcg_bpf.runtime.loader import check_bpf_object, load
    from memcg_bpf.runtime.store import check_name
    from memcg_bpf.runtime.preflight import require_caps, require_memcg_ops

    # What the command line alone can tell comes first, then privileges, then the kernel.
    if name is not None:
        check_name(name)
    if replace is not None:
        check_name(replace)
    ranges: dict[str, tuple[int, int]] = {}
    compiled = not target.endswith(".o")
    if compiled:
        source = str(_sources((target,))[0])
    else:
        obj_path, source = Path(target), ""
        if not obj_path.is_file():
            raise UsageError(f"{target}: no such file")
        check_bpf_object(obj_path)
    where = attach.resolve(cgroup, allow_override) if cgroup is not None or allow_override else None
    require_caps("load")
    require_memcg_ops()
    bpf = _libbpf()
    if compiled:
        obj_path = _compile(bpf, (target,), btf, None)[0]
        if not target.endswith(".c"):
            ranges = {k.name: k.range for k in catalog.find(target).knobs if k.range}
    default_name = obj_path.name.removesuffix(".bpf.o").removesuffix(".o")
    loaded = load(bpf, obj_path, name or default_name, sets, source=source, ranges=ranges, replace=replace,
                  target=where)
    if as_json:
        click.echo(json.dumps(loaded.meta, indent=2))
    else:
        knobs = ", ".join(f"{k}={v}" for k, v in loaded.meta["knobs"].items()) or "no knobs"
        replaced = f", replacing {replace}" if replace else ""
        override = ", allows override" if loaded.meta["allow_override"] else ""
        click.echo(f"loaded {loaded.name} on {loaded.meta['cgroup']} ({knobs}{replaced}{override}); "
                   f"pinned at {loaded.directory}")


@main.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", "-n", is_flag=True, help="Check the file and print the plan; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def apply_cmd(file: Path, dry_run: bool, as_json: bool) -> None:
    """Make the loaded policies exactly what FILE declares.

    FILE is TOML with one [[policy]] table per policy: name, policy (a
    bundled policy or a path to a .bpf.c / .bpf.o), and optionally cgroup
    (default "/"), knobs (a table) and allow_override. The whole file is
    checked first (every policy compiled, every knob and cgroup checked);
    a problem names the file, the line and what to fix, and changes
    nothing. Then apply unloads what the file no longer lists, loads what
    is new, and replaces what changed with no gap (BPF_LINK_UPDATE); a
    policy moved to another cgroup is unloaded and loaded again. A
    second run with the same file changes nothing and says so.

    \b
    Example FILE:
      [[policy]]
      name = "batch-boost"
      policy = "reclaim_boost"
      cgroup = "/batch"
      knobs = { reclaim_pages = 256 }

    \b
    Examples:
      memcg-bpf apply /etc/memcg-bpf/policies.toml --dry-run
      memcg-bpf apply /etc/memcg-bpf/policies.toml
    """
    from memcg_bpf.bpf.syscalls import Sys
    from memcg_bpf.runtime import apply as applying
    from memcg_bpf.runtime.declare import parse
    from memcg_bpf.runtime.preflight import require_all, require_memcg_ops

    declared = parse(file)
    require_memcg_ops()   # the policies compile against the running kernel's memcg_ops
    bpf = _libbpf()
    checked = applying.check(file, declared, bpf, lambda policy: _compile(bpf, (policy,), None, None)[0])
    require_all("apply")
    plan = applying.make_plan(checked, Sys(bpf))
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "unload": plan.unload, "load": [d.name for d in plan.load],
                               "replace": [d.name for d in plan.replace], "keep": plan.keep}, indent=2))
    if plan.empty:
        if not as_json:
            click.echo(f"nothing to do: {len(plan.keep)} policies loaded as {file} declares")
        return
    if dry_run:
        if not as_json:
            click.echo("\n".join(["would:"] + [f"  {line}" for line in plan.lines()]))
        return
    applying.execute(plan, checked, bpf, (lambda line: None) if as_json else click.echo)


@main.command("exporter")
@click.option("--port", type=click.IntRange(1, 65535), default=9431, show_default=True, help="TCP port to serve on.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
def exporter_cmd(port: int, address: str) -> None:
    """Serve every loaded policy's telemetry and the cgroups' memory events for Prometheus.

    Each scrape of http://ADDRESS:PORT/metrics reads afresh: the metrics
    of 'stats --prometheus' for every policy loaded at that moment, and,
    for every memory cgroup, memory.events (memcg_bpf_cgroup_memory_events_total),
    memory.current and the memory.pressure stall time. Runs until
    SIGTERM or SIGINT.

    \b
    Examples:
      memcg-bpf exporter
      memcg-bpf exporter --address 0.0.0.0 --port 9431
    """
    from memcg_bpf.bpf.syscalls import Sys
    from memcg_bpf.runtime.exporter import serve
    from memcg_bpf.runtime.preflight import require_all
    from memcg_bpf.runtime.stats import Reader

    require_all("exporter")
    click.echo(f"serving http://{address}:{port}/metrics", err=True)
    serve(Reader(Sys(_libbpf())), address, port)


@main.command("top")
@click.argument("name")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, metavar="SECS",
              help="Seconds between frames (the rates are over this long).")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per frame.")
def top_cmd(name: str, interval: float, once: bool, as_json: bool) -> None:
    """A live view of the cgroups a loaded policy counts, most memory pressure first.

    For each cgroup in the policy's maps: its counters as rates (for
    telemetry: calls/s, charged/s, failed/s, each failed charge a round of
    direct reclaim, pages_requested/s), memory.current against
    memory.high and memory.max, and the PSI averages (avg10) of
    memory.pressure. On a terminal the frame refreshes in place; piped,
    frames follow each other. Ctrl-C stops.

    \b
    Examples:
      memcg-bpf top telemetry
      memcg-bpf top telemetry --once --interval 1
      memcg-bpf top telemetry --once --json
    """
    import sys as _sys
    from memcg_bpf.bpf.syscalls import Sys
    from memcg_bpf.runtime.preflight import require_all
    from memcg_bpf.runtime.stats import Reader
    from memcg_bpf.runtime.store import check_name, require_loaded
    from memcg_bpf.runtime.top import frame, render

    check_name(name)
    require_all("top")
    require_loaded(name)
    reader = Reader(Sys(_libbpf()))
    tty = _sys.stdout.isatty() and not as_json
    try:
        while True:
            rows = frame(reader, name, interval)
            if as_json:
                click.echo(json.dumps({"policy": name, "interval": interval, "rows": [r.as_json() for r in rows]}))
            else:
                click.echo(("\x1b[H\x1b[2J" if tty else "") + render(name, rows, interval) + ("" if tty else "\n"))
            if once:
                return
    except KeyboardInterrupt:
        pass


@main.command("unload")
@click.argument("name", required=False)
@click.option("--all", "unload_all", is_flag=True, help="Unload every memcg-bpf catalog.")
def unload_cmd(name: str | None, unload_all: bool) -> None:
    """Unregister a policy and remove its pins.

    \b
    Examples:
      memcg-bpf unload telemetry
      memcg-bpf unload --all
    """
    from memcg_bpf.runtime.loader import unload, unload_all as unload_every
    from memcg_bpf.runtime.store import check_name
    from memcg_bpf.runtime.preflight import require_all

    if bool(name) == unload_all:
        raise UsageError("name one policy or pass --all (see 'memcg-bpf list')")
    if name:
        check_name(name)
    require_all("unload")
    for entry in unload_every() if unload_all else unload(name or ""):
        click.echo(f"unloaded {entry.name}{LEFT_BY.get(entry.state, '')}")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--enable-stats", is_flag=True,
              help="Turn on kernel.bpf_stats_enabled (system-wide) so run counts and times are collected. "
                   "It stays on (every BPF program run then reads the clock twice) until "
                   "'sysctl kernel.bpf_stats_enabled=0'.")
def list_cmd(as_json: bool, enable_stats: bool) -> None:
    """Loaded policies: the cgroup each is attached to, object, knobs, load time, ids, run counts.

    A policy whose cgroup was removed is shown as such: it is inert, and
    'unload' removes it.

    \b
    Examples:
      memcg-bpf list
      memcg-bpf list --json --enable-stats
    """
    from memcg_bpf.runtime import listing
    from memcg_bpf.bpf.syscalls import Sys
    from memcg_bpf.runtime.preflight import require_all

    require_all("list")
    if enable_stats:
        listing.enable_stats()
        click.echo("enabled kernel.bpf_stats_enabled (system-wide; set it to 0 to turn it off)", err=True)
    entries = listing.policies(Sys(_libbpf()))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    else:
        click.echo(listing.render(entries, listing.stats_enabled()))


@main.command("stats")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='JSON: {"policy", "globals", "maps"} (and "notes").')
@click.option("--prometheus", is_flag=True, help="Prometheus text format, with HELP and TYPE lines.")
@click.option("--textfile", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write DIR/memcg_bpf_NAME.prom atomically for node_exporter's textfile collector "
                   "(with --watch, every SECS) instead of printing.")
@click.option("--watch", type=click.FloatRange(min=0.1), metavar="SECS",
              help="Redraw every SECS seconds, with rates; ends with an error once the policy is unloaded.")
def stats_cmd(name: str, as_json: bool, prometheus: bool, textfile: Path | None, watch: float | None) -> None:
    """Every map and global of a loaded policy, decoded through its BTF.

    Keys and fields typed memcg_bpf_cgid_t are shown with the cgroup's path.
    Per-CPU values are combined over CPUs: counters summed, timestamps the
    latest, cgroup ids, enums and floats the first CPU's non-zero value.

    \b
    Examples:
      memcg-bpf stats telemetry
      memcg-bpf stats telemetry --json
      memcg-bpf stats telemetry --textfile /var/lib/node_exporter/textfile_collector
      memcg-bpf stats telemetry --textfile /var/lib/node_exporter/textfile_collector --watch 15
      memcg-bpf stats telemetry --watch 2   # redraws; piped, frames are separated by '--- HH:MM:SS ---'
    """
    import time

    from memcg_bpf.runtime import prom
    from memcg_bpf.runtime import stats
    from memcg_bpf.bpf.syscalls import Sys
    from memcg_bpf.runtime.watch import watch as watch_loop

    from memcg_bpf.runtime.preflight import require_all

    if as_json and (prometheus or textfile):
        raise UsageError("--json excludes --prometheus and --textfile: pick one")
    require_all("stats")
    reader = stats.Reader(Sys(_libbpf()))
    tty = sys.stdout.isatty()
    frames = 0

    def show(snapshot: stats.Snapshot, rates: dict[tuple[str, ...], float] | None) -> None:
        nonlocal frames
        frames += 1
        if textfile is not None:
            prom.write_textfile(snapshot, textfile)
            return
        if as_json:
            text = json.dumps(snapshot.as_json(), indent=2)
        elif prometheus:
            text = prom.render(snapshot).rstrip("\n")
        else:
            text = stats.table(snapshot, rates)
        if frames > 1:
            # On a terminal redraw in place; into a pipe or file, separate the frames.
            text = ("\x1b[2J\x1b[H" if tty else f"--- {time.strftime('%H:%M:%S')} ---\n") + text
        click.echo(text, color=tty)

    if watch is None:
        show(reader.snapshot(name), None)
    else:
        watch_loop(reader, name, watch, show)


@main.command("policies")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def policies_cmd(as_json: bool) -> None:
    """The bundled policies, with a one-line description and their knobs.

    \b
    Examples:
      memcg-bpf policies
      memcg-bpf policies --json
    """
    from memcg_bpf.runtime import catalog

    found = catalog.bundled()
    if as_json:
        click.echo(json.dumps([{"name": p.name, "description": p.description, "source": str(p.source),
                                "knobs": [{"name": k.name, "type": k.type, "default": k.default,
                                           "help": k.help, "range": list(k.range) if k.range else None}
                                          for k in p.knobs]} for p in found], indent=2))
        return
    for p in found:
        click.echo(f"{p.name:14} {p.description}")
        for k in p.knobs:
            click.echo(f"  {k.name} ({k.type}, default {k.default}): {k.help}")


@main.command("bench")
@click.argument("scenario", type=click.Choice(["overhead", "reclaim", "value", "all"]), default="all")
@click.option("--repeat", type=click.IntRange(min=1),
              help="Runs per point (default 5 overhead rounds / 5 reclaim runs / 5 value repetitions).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output directory (default: bench/).")
@click.option("--quick", is_flag=True, help="Tiny sizes, for checking that the benchmark runs (CI).")
def bench_cmd(scenario: str, repeat: int | None, out: Path | None, quick: bool) -> None:
    """Measure the hook's overhead, the reclaim target, and the policies against other controllers.

    overhead: the hook's cost per charge path (-icount); reclaim: what the
    reclaim target changes; value: a service and a batch job under one
    parent with kernel defaults, static memory.low, a userspace controller
    and the BPF policies (priority and proactive cases, modes rotated).
    Writes OUT/results/<scenario>.json (every run), PNG plots and OUT/REPORT.md.
    Builds the baseline kernel (without the series) if needed.

    \b
    Examples:
      memcg-bpf bench all              # the committed report
      memcg-bpf bench value --repeat 5
      memcg-bpf bench overhead --repeat 3
      memcg-bpf bench all --quick --out /tmp/bench
    """
    import dataclasses

    from memcg_bpf.testbed.bench import FULL, QUICK, Bench, bench_dir
    from memcg_bpf.progress import Progress
    from memcg_bpf.testbed.report import render

    plan = QUICK if quick else FULL
    if repeat:
        plan = dataclasses.replace(plan, repeat=repeat, value=dataclasses.replace(plan.value, reps=repeat))
    target = out or bench_dir()
    bench = Bench(plan, target, Progress(), quick)
    bench.run(["overhead", "reclaim", "value"] if scenario == "all" else [scenario])
    click.echo(str(render(target)))
