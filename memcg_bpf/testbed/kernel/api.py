"""Entry points: describe the wanted kernel, build it or find it in the cache."""

from __future__ import annotations

from pathlib import Path

from memcg_bpf.errors import MemcgBpfError, UsageError
from memcg_bpf.paths import cache_dir, patch_dir
from memcg_bpf.progress import Progress
from memcg_bpf.testbed.kernel import kconfig
from memcg_bpf.testbed.kernel import libbpf
from memcg_bpf.testbed.kernel.build import Artifacts, Builder, BuildRequest, cached
from memcg_bpf.testbed.kernel.patches import read_series
from memcg_bpf.testbed.kernel.source import KernelSource, debian_source, given_source

FRAGMENT_NAME = "qemu.config"

# Named variants of the test kernel: config options over kernel_patch/qemu.config.
VARIANTS: dict[str, tuple[str, ...]] = {
    # The test kernel itself (lockdep, PROVE_RCU, DEBUG_ATOMIC_SLEEP are in the fragment).
    "test": (),
    # Memory-safety debugging on top: use-after-free and out-of-bounds (KASAN), leaks (kmemleak).
    "debug": ("CONFIG_KASAN=y", "CONFIG_KASAN_GENERIC=y", "CONFIG_KASAN_INLINE=y",
              "CONFIG_DEBUG_KMEMLEAK=y", "CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN=n", "CONFIG_DEBUG_LIST=y"),
    # Benchmarks: no lock debugging, which multiplies the cost of every lock and RCU section.
    "bench": ("CONFIG_PROVE_LOCKING=n", "CONFIG_PROVE_RCU=n", "CONFIG_DEBUG_ATOMIC_SLEEP=n"),
}


def variant_overrides(variant: str) -> tuple[str, ...]:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise UsageError(f"unknown kernel variant {variant!r}: use one of {', '.join(VARIANTS)}") from None


def make_request(source: KernelSource, *, baseline: bool = False,
                 overrides: tuple[str, ...] = (), jobs: int = 0) -> BuildRequest:
    patches = patch_dir()
    fragment_path = patches / FRAGMENT_NAME
    if not fragment_path.is_file():
        raise MemcgBpfError(f"{fragment_path} is missing: restore kernel_patch/ from the repository")
    fragment = kconfig.parse_fragment(fragment_path.read_text())
    parsed = [kconfig.parse_override(spec) for spec in overrides]
    series = read_series(patches)
    if baseline:
        # Options the series adds do not exist without it.
        added = series.added_symbols()
        fragment = {name: opt for name, opt in fragment.items() if name.removeprefix("CONFIG_") not in added}
    return BuildRequest(
        source=source,
        series=None if baseline else series,
        fragment=fragment,
        overrides={o.name: o for o in parsed},
        jobs=jobs,
    )


def resolve_source(source: Path | None, progress: Progress) -> KernelSource:
    return given_source(source) if source else debian_source(cache_dir(), progress)


def build(source: Path | None = None, *, baseline: bool = False, overrides: tuple[str, ...] = (),
          jobs: int = 0, force: bool = False, progress: Progress | None = None) -> tuple[Artifacts, bool]:
    """Build (or reuse) a kernel; returns the artifacts and whether they came from the cache."""
    progress = progress or Progress()
    request = make_request(resolve_source(source, progress), baseline=baseline, overrides=overrides, jobs=jobs)
    hit = None if force else cached(cache_dir(), request)
    if hit:
        progress.say("cache", f"kernel {request.variant} {request.key()} is up to date")
        libbpf.install(hit.libbpf, hit.include, hit.manifest["libbpf_version"])
        return hit, True
    return Builder(cache_dir(), request, progress).run(), False


def find_built(*, baseline: bool = False, overrides: tuple[str, ...] = ()) -> Artifacts:
    """The cached kernel for the current series and fragment, without building."""
    progress = Progress(quiet=True)
    request = make_request(resolve_source(None, progress), baseline=baseline, overrides=overrides)
    hit = cached(cache_dir(), request)
    if hit is None:
        flag = " --baseline" if baseline else ""
        raise MemcgBpfError(f"no {request.variant} kernel is built for the current patches and config: "
                            f"run 'memcg-bpf kernel build{flag}' first, or pass --kernel PATH")
    return hit
