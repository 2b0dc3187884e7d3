"""Build a test kernel and its BPF tools, cached by what goes into them.

Stages, as in kunit.py: source -> stage (copy + patches) -> sync into the
variant's persistent tree (only changed files, so make stays incremental)
-> configure (allnoconfig + fragment, checked) -> make -> tools -> artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.progress import Progress
from memcg_bpf.runtime.toolchain import find_clang, find_llvm_tool, require
from memcg_bpf.testbed.kernel import cache as kcache
from memcg_bpf.testbed.kernel import kconfig
from memcg_bpf.testbed.kernel import libbpf
from memcg_bpf.testbed.kernel.patches import Series, apply_series
from memcg_bpf.testbed.kernel.source import KernelSource
from memcg_bpf.paths import bundled_patch_dir

BUILD_SUBDIR = "build-out"
APPLIED_FILE = "applied-patches"  # in a tree: sha256 of each patch its source carries

# Bump when the build recipe changes in a way that changes the artifacts.
RECIPE_VERSION = "2"
APT_HINT = "flex bison bc libelf-dev libssl-dev dwarves zlib1g-dev rsync"


@dataclass(frozen=True)
class BuildRequest:
    source: KernelSource
    series: Series | None  # None: the baseline, without the series
    fragment: dict[str, kconfig.Option]
    overrides: dict[str, kconfig.Option] = field(default_factory=dict)
    jobs: int = 0

    @property
    def options(self) -> dict[str, kconfig.Option]:
        return {**self.fragment, **self.overrides}

    @property
    def variant(self) -> str:
        name = "memcg-bpf" if self.series else "baseline"
        if self.series and self.series.directory.resolve() != bundled_patch_dir().resolve():
            # Any other series (a prefix of ours, a work in progress) shares one tree: a tree per
            # series would add 4.5 GB for each, and moving between series is an incremental build.
            name += "-series"
        if self.overrides:
            digest = hashlib.sha256(kconfig.render(self.overrides).encode()).hexdigest()[:10]
            name += f"-{digest}"
        return name

    def key(self) -> str:
        h = hashlib.sha256()
        for part in (RECIPE_VERSION, self.source.identity,
                     self.series.digest() if self.series else "no-series",
                     kconfig.render(self.options), compiler_identity()):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Artifacts:
    directory: Path
    manifest: dict

    @property
    def bzimage(self) -> Path:
        return self.directory / "bzImage"

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def libbpf(self) -> Path:
        return self.directory / "lib" / "libbpf.so"

    @property
    def bpftool(self) -> Path:
        return self.directory / "bpftool"

    @property
    def include(self) -> Path:
        return self.directory / "include"

    def paths(self) -> dict[str, str]:
        return {
            "bzImage": str(self.bzimage),
            "vmlinux": str(self.vmlinux),
            "config": str(self.directory / "config"),
            "libbpf": str(self.libbpf),
            "bpftool": str(self.bpftool),
            "include": str(self.include),
        }


def compiler_identity() -> str:
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "no-gcc"


def patch_digests(patches: Sequence[Path]) -> list[str]:
    """sha256 of each patch, as a tree's APPLIED_FILE lists them."""
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in patches]


@contextmanager
def stop_group_on_exit(proc: subprocess.Popen[str]) -> Iterator[None]:
    """On an exception (KeyboardInterrupt, a test's hard stop), SIGTERM PROC's process group and wait."""
    try:
        yield
    except BaseException:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        raise


def artifacts_dir(cache: Path, key: str) -> Path:
    return cache / "kernels" / key


def cached(cache: Path, request: BuildRequest) -> Artifacts | None:
    directory = artifacts_dir(cache, request.key())
    manifest = directory / "manifest.json"
    if manifest.is_file():
        try:
            kcache.mark_used(directory)
            # The tree goes with it: its sources serve kernel-doc and checkpatch, and the next build.
            tree = cache / "trees" / request.variant
            if tree.is_dir():
                kcache.mark_used(tree)
        except OSError:
            pass  # a read-only cache still serves its kernels
        return Artifacts(directory, json.loads(manifest.read_text()))
    return None


def default_jobs() -> int:
    return (os.cpu_count() or 1) + 1


class Builder:
    """Runs one BuildRequest in the variant's tree under the cache."""

    def __init__(self, cache: Path, request: BuildRequest, progress: Progress) -> None:
        self.cache = cache
        self.request = request
        self.progress = progress
        self.tree = cache / "trees" / request.variant
        self.src = self.tree / "src"
        # A direct subdirectory of the source: kbuild then writes relative
        # paths (srctree := ..) into its command records, so a copied tree
        # (see seed_tree) still builds incrementally.
        self.out = self.src / BUILD_SUBDIR
        self.stage = self.tree / "stage"
        self.log = self.tree / "build.log"
        self.jobs = request.jobs or default_jobs()
        self.config_warnings: list[str] = []

    def run(self) -> Artifacts:
        require("make", "gcc", "flex", "bison", "bc", "pahole", "rsync", "patch", package_hint=APT_HINT + " patch gcc make")
        started = time.monotonic()
        kcache.check_free_space(self.cache, new_tree=not self.tree.exists())
        if not self.tree.exists():
            self.seed_tree()
        self.tree.mkdir(parents=True, exist_ok=True)
        kcache.mark_used(self.tree)
        (self.tree / "source-identity").write_text(self.request.source.identity)
        self.prepare_source()
        (self.tree / APPLIED_FILE).write_text("".join(d + "\n" for d in self.patch_digests()))
        self.configure()
        warnings = self.make_kernel()
        self.make_tools()
        artifacts = self.collect(warnings, time.monotonic() - started)
        self.progress.say("done", f"kernel {self.request.source.version} ({self.request.variant}) "
                                  f"built in {time.monotonic() - started:.0f}s")
        return artifacts

    # -- source ---------------------------------------------------------
    def seed_tree(self) -> None:
        """Start a new variant from the built tree that differs least, so make is incremental.

        Least: the same config overrides first (what the config touches is
        rebuilt otherwise), then the fewest patches applied on one side only
        (every file they touch is rebuilt, every includer of a header too).
        """
        def overrides_tag(name: str) -> str:
            last = name.rsplit("-", 1)[-1]
            return last if re.fullmatch(r"[0-9a-f]{10}", last) else ""

        tag = overrides_tag(self.tree.name) if self.request.overrides else ""
        ours = set(self.patch_digests())

        def distance(sibling: Path) -> tuple[int, int, str]:
            applied = sibling / APPLIED_FILE
            theirs = set(applied.read_text().split()) if applied.is_file() else set()
            return (overrides_tag(sibling.name) != tag, len(ours ^ theirs), sibling.name)

        candidates = [s for s in self.tree.parent.glob("*")
                      if "." not in s.name and (s / "source-identity").is_file()
                      and (s / "source-identity").read_text() == self.request.source.identity
                      and (s / "src" / BUILD_SUBDIR / "vmlinux").exists()]
        for sibling in sorted(candidates, key=distance)[:1]:
            self.progress.say("source", f"seeding {self.tree.name} from {sibling.name} for an incremental build")
            tmp = self.tree.with_name(self.tree.name + ".seeding")
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["cp", "-a", str(sibling), str(tmp)], check=True)
            (tmp / "build.log").unlink(missing_ok=True)
            tmp.rename(self.tree)

    def patch_digests(self) -> list[str]:
        series = self.request.series
        return patch_digests(series.patches) if series else []

    def prepare_source(self) -> None:
        req = self.request
        self.progress.say("source", f"copying {req.source.path} to {self.stage}")
        excludes = ["--exclude=/.git", "--exclude=/.config", "--exclude=/include/config/",
                    "--exclude=/include/generated/", "--exclude=/arch/*/include/generated/"]
        subprocess.run(["rsync", "-a", "--delete", *excludes, f"{req.source.path}/", f"{self.stage}/"], check=True)
        if req.series:
            self.progress.say("patch", f"applying {len(req.series.patches)} patches from {req.series.directory}")
            apply_series(req.series, self.stage)
        self.progress.say("source", f"syncing changed files into {self.src}")
        # No -t: files whose content changed get a new mtime, the others keep
        # theirs, so make rebuilds exactly what the change touches.
        subprocess.run(["rsync", "-rlc", "--delete", f"--exclude=/{BUILD_SUBDIR}/",
                        f"{self.stage}/", f"{self.src}/"], check=True)

    # -- configure --------------------------------------------------------
    def configure(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress.say("config", "allnoconfig + fragment, then olddefconfig")
        self.config_warnings = self.make(["allnoconfig"])
        config = self.out / ".config"
        # Appended lines override allnoconfig's; olddefconfig then fills in
        # defaults for what the fragment enabled (e.g. menus it depends on).
        with config.open("a") as f:
            f.write(kconfig.render(self.request.options))
        self.config_warnings += self.make(["olddefconfig"])
        dropped = kconfig.dropped_options(self.request.options, kconfig.read_config(self.out / ".config"))
        if dropped:
            raise MemcgBpfError(
                f"the kernel config dropped {len(dropped)} option(s) of the fragment: {'; '.join(dropped)}; "
                "fix their dependencies in kernel_patch/qemu.config"
            )

    # -- make ---------------------------------------------------------------
    def make(self, targets: list[str]) -> list[str]:
        """Run a short make step; return its warning lines."""
        cmd = ["make", "-C", str(self.src), f"O={self.out}", *targets]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise MemcgBpfError(f"'make {' '.join(targets)}' failed in {self.src}; its output ends:\n{tail}")
        # "override: reassigning to symbol" is the fragment doing its job.
        return [line.strip() for line in output.splitlines()
                if "warning" in line.lower() and "override: reassigning to symbol" not in line]

    def make_kernel(self) -> list[str]:
        self.progress.say("build", f"make -j{self.jobs} bzImage (log: {self.log})")
        cmd = ["make", "-C", str(self.src), f"O={self.out}", f"-j{self.jobs}", "bzImage"]
        compiled = 0
        warnings: list[str] = list(self.config_warnings)
        last_report = time.monotonic()
        last_object = ""
        # Its own process group: when this process is stopped part-way (Ctrl-C, the test budget's
        # hard stop), the whole make gets SIGTERM, so make deletes the objects it was writing and
        # the next build continues from a tree with no half-written file.
        with self.log.open("w") as log, subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                start_new_session=True) as proc, stop_group_on_exit(proc):
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                stripped = line.strip()
                if stripped.startswith(("CC ", "AS ", "LD ", "AR ")):
                    compiled += 1
                    last_object = stripped.split(None, 1)[-1]
                if "warning:" in line:
                    warnings.append(stripped)
                now = time.monotonic()
                if now - last_report >= 15:
                    last_report = now
                    self.progress.say("build", f"{compiled} steps done, now {last_object}")
            proc.wait()
        if proc.returncode != 0:
            lines = self.log.read_text(errors="replace").splitlines()
            errors = [ln.strip() for ln in lines if " error: " in ln or "Error " in ln]
            first = errors[0] if errors else "see the log"
            raise MemcgBpfError(f"kernel build failed: {first}; full log: {self.log}")
        self.progress.say("build", f"bzImage ready ({compiled} steps, {len(warnings)} warnings)")
        for warning in warnings:
            self.progress.say("warning", warning)
        return warnings

    # -- tools ----------------------------------------------------------------
    def make_tools(self) -> None:
        clang = find_clang()
        strip = find_llvm_tool("llvm-strip", clang)
        tools = self.tree / "tools"
        libbpf_out = tools / "libbpf"
        bpftool_out = tools / "bpftool"
        for directory in (libbpf_out, bpftool_out):
            directory.mkdir(parents=True, exist_ok=True)
        self.progress.say("tools", "building libbpf and bpftool from the kernel tree")
        libbpf.make(self.src, libbpf_out, tools / "headers", self.jobs)
        libbpf.make_tool(self.src / "tools/bpf/bpftool",
                         [f"OUTPUT={bpftool_out}/", f"CLANG={clang}", f"LLVM_STRIP={strip}"], self.jobs, "bpftool")

    # -- artifacts ------------------------------------------------------------
    def collect(self, warnings: list[str], seconds: float) -> Artifacts:
        req = self.request
        final = artifacts_dir(self.cache, req.key())
        tmp = final.with_name(final.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "lib").mkdir(parents=True)
        shutil.copy2(self.out / "arch/x86/boot/bzImage", tmp / "bzImage")
        shutil.copy2(self.out / "vmlinux", tmp / "vmlinux")
        shutil.copy2(self.out / ".config", tmp / "config")
        tools = self.tree / "tools"
        libbpf_version = libbpf.built_version(tools / "libbpf")
        shutil.copy2(tools / "libbpf" / f"libbpf.so.{libbpf_version}", tmp / "lib" / "libbpf.so")
        shutil.copy2(tools / "bpftool" / "bpftool", tmp / "bpftool")
        shutil.copytree(tools / "headers" / "include", tmp / "include")
        manifest = {
            "key": req.key(),
            "variant": req.variant,
            "kernel_version": req.source.version,
            "source": str(req.source.path),
            "patches": [p.name for p in req.series.patches] if req.series else [],
            "overrides": kconfig.render(req.overrides).splitlines(),
            "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "warnings": warnings,
            "libbpf_version": libbpf_version,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        kcache.mark_used(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        # The policy runtime finds libbpf here, independent of this kernel's cache key.
        libbpf.install(final / "lib" / "libbpf.so", final / "include", libbpf_version)
        return Artifacts(final, manifest)
