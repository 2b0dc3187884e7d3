"""`memcg-bpf bench`: run the benchmark scenarios in VMs and write results, plots and a report.

overhead: instruction-exact (-icount) cost of three charge paths (anonymous
faults, shmem writes, accounted slab of file creation) on the baseline
kernel, the patched kernel without a handler, with noop and telemetry, with
noop attached to another subtree, and with the same counting done by fentry
and kprobe programs on the unpatched
kernel; several boots per configuration with address-layout randomness off.
reclaim: real-time throughput, burst latency and reclaim counters of two
workloads past memory.max, without a policy and with reclaim_boost at
several reclaim targets.
value: a service and a batch job under one parent, with kernel defaults,
static memory.low, a userspace controller and the BPF policies (see
value.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcg_bpf.runtime.compile import Toolchain, build_objects, compile_bpf, vmlinux_h
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.testbed.kernel import kconfig
from memcg_bpf.testbed.kernel.api import VARIANTS, build
from memcg_bpf.testbed.kernel.build import Artifacts
from memcg_bpf.testbed.value import FULL_VALUE, QUICK_VALUE, ValuePlan
from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.paths import bundled_policy_dir, cache_dir, checkout_dir
from memcg_bpf.progress import Progress
from memcg_bpf.runtime.toolchain import find_clang


def bench_dir() -> Path:
    """bench/: the workloads, the guest side (python3 -m bench.guest) and the committed results."""
    return checkout_dir("bench", "memcg-bpf bench")


# Options that change what a measurement means; recorded with every result.
REPORTED_OPTIONS = ("CONFIG_JUMP_LABEL", "CONFIG_PREEMPT", "CONFIG_PREEMPT_RCU", "CONFIG_SMP",
                    "CONFIG_PROVE_LOCKING", "CONFIG_PROVE_RCU", "CONFIG_DEBUG_ATOMIC_SLEEP", "CONFIG_KASAN",
                    "CONFIG_RANDOMIZE_BASE", "CONFIG_MITIGATION_RETPOLINE", "CONFIG_CFI_CLANG", "CONFIG_HZ")


@dataclass(frozen=True)
class ChargePath:
    """One workload of bench/chargepath.c and its two regimes."""

    size: int               # MiB (anon, shmem) or files (kmem)
    pressure_limit_mb: int  # memory.max of the pressure regime
    balloon_mb: int = 0     # anonymous memory touched before each round (outside the timing)


@dataclass(frozen=True)
class Plan:
    repeat: int
    boots: int
    paths: dict[str, ChargePath]
    reclaim_limit_mb: int
    seq_mb: int
    rand_mb: int
    rand_touches: int
    boost_targets: tuple[int, ...]
    value: ValuePlan


FULL = Plan(repeat=5, boots=3,
            paths={"anon": ChargePath(64, 32), "shmem": ChargePath(64, 32),
                   "kmem": ChargePath(16384, 44, balloon_mb=32)},
            reclaim_limit_mb=64, seq_mb=256, rand_mb=96, rand_touches=98304,
            boost_targets=(32, 64, 128, 256, 512), value=FULL_VALUE)
QUICK = Plan(repeat=3, boots=2,
             paths={"anon": ChargePath(4, 2), "shmem": ChargePath(4, 2), "kmem": ChargePath(2048, 16, balloon_mb=14)},
             reclaim_limit_mb=8, seq_mb=16, rand_mb=12, rand_touches=4096, boost_targets=(256,),
             value=QUICK_VALUE)
# Real-time runs (reclaim) give each vCPU a host thread, so that 2 vCPUs run in parallel, except in
# --quick mode (CI), which must not be flaky: QEMU 7.2's multi-threaded TCG can crash the guest with
# an int3 Oops when the kernel patches code (README). A full run boots again when that happens and
# reports how often.
QEMU_MTTCG_CRASH = "Oops: int3"
QEMU_CRASH_ATTEMPTS = 3
# Layout randomness off, so that boots of one kernel run the same instructions.
FIXED_LAYOUT = "nokaslr norandmaps"


class Bench:
    def __init__(self, plan: Plan, out: Path, progress: Progress, quick: bool) -> None:
        self.dir = bench_dir()  # first: without a checkout, fail before building kernels
        self.plan = plan
        self.out = out
        self.progress = progress
        self.quick = quick
        self.results = out / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        # The committed numbers come from kernels without lock debugging; --quick only
        # checks that everything runs, on the test kernels that CI builds anyway.
        self.variant = "test" if quick else "bench"
        self.tcg_thread = "single" if quick else "multi"
        self.qemu_crashes = 0
        self.config = VARIANTS[self.variant]
        self.patched, _ = build(overrides=self.config, progress=progress)
        self.baseline, _ = build(baseline=True, overrides=self.config, progress=progress)
        self.bin_dir = cache_dir() / "bench-bin"
        self.chargepath = self.compile_c("chargepath")
        self.reclaimload = self.compile_c("reclaimload")
        self.value_bins = {name: self.compile_c(name) for name in ("service", "batch", "uctl")}
        self.policies = self.compile_policies()

    def compile_c(self, name: str) -> Path:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        target = self.bin_dir / name
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(target), str(self.dir / f"{name}.c")], check=True)
        return target

    def compile_policies(self) -> dict[str, Path]:
        bpf = Libbpf(self.patched.libbpf)
        tools = Toolchain(find_clang(), self.patched.include)
        sources = [bundled_policy_dir() / f"{n}.bpf.c"
                   for n in ("noop", "telemetry", "reclaim_boost", "priority", "proactive")]
        objs = {o.name.removesuffix(".bpf.o"): o
                for o in build_objects(bpf, sources, self.patched.vmlinux, cache_dir(), tools)}
        # The tracing program runs on the baseline kernel. It is compiled against the patched
        # kernel's vmlinux.h like everything else and relies on CO-RE for try_charge_memcg()'s
        # arguments and struct mem_cgroup, which the series does not change.
        headers = vmlinux_h(bpf, self.patched.vmlinux, cache_dir())
        objs["trace_count"] = compile_bpf(self.dir / "trace_count.bpf.c", self.bin_dir, headers, tools,
                                          includes=(bundled_policy_dir(),))
        return objs

    def vm(self, kernel: Artifacts, scenario: str, args: dict[str, Any], *, icount: bool, cpus: int,
           module: str = "bench.guest") -> Any:
        threads = [] if icount else ["--tcg-thread", self.tcg_thread]
        cmd = [sys.executable, "-m", "memcg_bpf", "vm", "run", "--kernel", str(kernel.bzimage),
               "--cpus", str(cpus), "--memory", "2G", "--timeout", "1200", *(["--icount"] if icount else []),
               *threads,
               "--append", FIXED_LAYOUT,
               "--", "python3", "-m", module, *([scenario] if module == "bench.guest" else []),
               json.dumps(args, default=str)]
        env = dict(os.environ, MEMCG_BPF_LIBBPF=str(kernel.libbpf))
        for attempt in range(1, QEMU_CRASH_ATTEMPTS + 1):
            proc = subprocess.run(cmd, cwd=self.dir.parent, env=env, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                return json.loads(proc.stdout.strip().splitlines()[-1])
            if not (threads == ["--tcg-thread", "multi"] and QEMU_MTTCG_CRASH in proc.stderr
                    and attempt < QEMU_CRASH_ATTEMPTS):
                break
            # QEMU 7.2's multi-threaded TCG misses code patched on another vCPU (README): the
            # guest dies with an int3 Oops, and the run is lost. Count it and boot again.
            self.qemu_crashes += 1
            self.progress.say(scenario, f"the guest hit QEMU's multi-threaded TCG int3 crash; booting again "
                                        f"({attempt + 1}/{QEMU_CRASH_ATTEMPTS})")
        raise MemcgBpfError(f"benchmark VM failed ({proc.returncode}): "
                            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}", details=proc.stderr[-4000:])

    def overhead(self) -> dict[str, Any]:
        p = self.plan
        configs = [
            ("baseline", self.baseline, {"kind": "none"}),
            ("no-handler", self.patched, {"kind": "none"}),
            ("noop", self.patched, {"kind": "policy", "obj": self.policies["noop"]}),
            ("noop-elsewhere", self.patched, {"kind": "policy", "obj": self.policies["noop"], "elsewhere": True}),
            ("telemetry", self.patched, {"kind": "policy", "obj": self.policies["telemetry"]}),
            ("fentry", self.baseline, {"kind": "fentry", "obj": self.policies["trace_count"]}),
            ("kprobe", self.baseline, {"kind": "kprobe", "obj": self.policies["trace_count"]}),
        ]
        out: dict[str, Any] = {"plan": dataclasses.asdict(p), "configs": {}}
        args = {"chargepath": self.chargepath, "rounds": p.repeat,
                "paths": {name: dataclasses.asdict(path) for name, path in p.paths.items()}}
        for i, (name, kernel, config) in enumerate(configs, 1):
            boots = []
            for boot in range(1, p.boots + 1):
                self.progress.say("overhead", f"{i}/{len(configs)} {name}, boot {boot}/{p.boots} "
                                              f"({kernel.manifest['variant']} kernel, -icount)")
                boots.append(self.vm(kernel, "overhead", {**args, "config": config}, icount=True, cpus=1))
            out["configs"][name] = {"kernel": kernel.manifest["key"], "boots": boots}
        return out

    def reclaim(self) -> dict[str, Any]:
        p = self.plan
        workloads = [{"name": "sequential", "argv": ["seq", str(p.seq_mb)]},
                     {"name": "random", "argv": ["rand", str(p.rand_mb), str(p.rand_touches)]}]
        configs: list[tuple[str, dict[str, Any]]] = [("none", {"kind": "none"})]
        configs += [(f"boost-{n}", {"kind": "policy", "obj": self.policies["reclaim_boost"],
                                    "set": [f"reclaim_pages={n}"]}) for n in p.boost_targets]
        out: dict[str, Any] = {"plan": dataclasses.asdict(p), "configs": {}}
        for i, (name, config) in enumerate(configs, 1):
            self.progress.say("reclaim", f"{i}/{len(configs)} {name} ({p.repeat} runs of each workload)")
            args = {"config": config, "reclaimload": self.reclaimload, "workloads": workloads,
                    "repeat": p.repeat, "limit_mb": p.reclaim_limit_mb}
            out["configs"][name] = self.vm(self.patched, "reclaim", args, icount=False, cpus=2)
        return out

    def value(self) -> dict[str, Any]:
        v = self.plan.value
        args = {**{k: str(p) for k, p in self.value_bins.items()}, "cases": v.cases("/value/service"),
                "max_mb": v.max_mb, "high_mb": v.high_mb, "protect_mb": v.protect_mb, "epoch_ms": v.epoch_ms,
                "timeout": v.timeout}
        boots = []
        for rep in range(v.reps):
            runs = v.runs(rep)
            self.progress.say("value", f"repetition {rep + 1}/{v.reps}: {len(runs)} runs of {v.seconds:g} s "
                                       f"in one boot (real time, 2 vCPUs)")
            boots.append(self.vm(self.patched, "value", {**args, "runs": runs}, icount=False, cpus=2,
                                 module="bench.value"))
        return {"plan": dataclasses.asdict(v), "boots": boots}

    def meta(self) -> dict[str, Any]:
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              check=False).stdout.splitlines()[0]
        config = kconfig.read_config(self.patched.directory / "config")
        return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": self.quick, "qemu": qemu,
                "kernel_version": self.patched.manifest["kernel_version"],
                "patched_kernel": self.patched.manifest["key"], "baseline_kernel": self.baseline.manifest["key"],
                "cpus": os.cpu_count(), "host": os.uname().release, "kernel_variant": self.variant,
                "config_overrides": list(self.config),
                "kernel_config": {name: config.get(name, "n") for name in REPORTED_OPTIONS},
                "guest_cmdline": FIXED_LAYOUT, "tcg_thread_real_time": self.tcg_thread}

    def run(self, scenarios: list[str]) -> list[Path]:
        written = []
        for scenario in scenarios:
            started = time.monotonic()
            data = {"meta": self.meta(), **getattr(self, scenario)()}
            data["meta"]["seconds"] = round(time.monotonic() - started, 1)
            data["meta"]["qemu_crashes_rebooted"] = self.qemu_crashes
            self.qemu_crashes = 0
            path = self.results / f"{scenario}.json"
            # value keeps every request and every 200 ms sample: compact, or it is 6 MB.
            text = json.dumps(data, separators=(",", ":")) if scenario == "value" else json.dumps(data, indent=1)
            path.write_text(text + "\n")
            written.append(path)
            self.progress.say(scenario, f"wrote {path}")
        return written
