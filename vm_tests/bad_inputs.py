"""Bad inputs people will hit, each with the exact error line memcg-bpf gives.

One list, three uses: vm_tests/test_bad_inputs.py runs every row in one
boot of the patched kernel and checks the exit code and the error line;
the README's table is rendered from it (`python3 -m vm_tests.bad_inputs`),
and tests/test_readme_bad_inputs.py checks the README still says the same.

In `message`, `…` stands for text that differs between runs (ids, paths of
compiled objects, the kernel release). `{obj:NAME}` in argv is replaced by
the path of a compiled test object.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class BadInput:
    id: str
    argv: tuple[str, ...]       # memcg-bpf's arguments
    exit: int
    message: str                # the last line of stderr, after "memcg-bpf: error: "
    setup: str = ""             # a state vm_tests/guest/misuse.py prepares first (see SETUPS)
    user: str = "root"          # root, nobody (uid 65534), no-caps, no-sys-admin
    env: tuple[tuple[str, str], ...] = ()
    shows: str = ""             # text stderr must also contain (above the error line)


SETUPS = {
    "": "",
    "telemetry": "policy telemetry loaded",
    "foreign": "memcg_ops registered by a program memcg-bpf did not load",
    "no-bpffs": "bpffs unmounted",
    "bpffs-0700": "/sys/fs/bpf mode 0700",
    "damaged": "a pin directory /sys/fs/bpf/memcg-bpf/damaged without metadata or link",
    "fake-object": "/tmp/fake.bpf.o is a text file",
    "broken-c": "/tmp/broken.bpf.c does not compile",
}

CAPS = "run it as root (in the initial user namespace)"
NOT_LOADED = "no policy named 'nosuch' is loaded (loaded: none); see 'memcg-bpf list'"
BAD_NAME = "use letters, digits, '_' and '-' (at most 48, not starting with '-')"
KNOBS = "valid knobs: reclaim_pages (__u32, default 128), cgroup_ids (memcg_bpf_cgid_t[16], default [])"

ROWS: tuple[BadInput, ...] = (
    # What the command line alone tells.
    BadInput("unknown-policy", ("load", "nosuch"), 2,
             "unknown policy 'nosuch': bundled policies are noop, priority, proactive, reclaim_boost, telemetry "
             "(or pass FILE.bpf.c / FILE.bpf.o)"),
    BadInput("name-with-slash", ("load", "telemetry", "--name", "a/b"), 2, f"bad policy name 'a/b': {BAD_NAME}"),
    BadInput("name-with-newline", ("load", "telemetry", "--name", "foo\n"), 2,
             f"bad policy name 'foo\\n': {BAD_NAME}"),
    BadInput("name-with-dash", ("load", "telemetry", "--name", "-x"), 2, f"bad policy name '-x': {BAD_NAME}"),
    BadInput("name-too-long", ("load", "telemetry", "--name", "n" * 49), 2,
             f"bad policy name '{'n' * 49}': {BAD_NAME}"),
    BadInput("missing-object", ("load", "/tmp/nosuch.bpf.o"), 2, "/tmp/nosuch.bpf.o: no such file"),
    BadInput("missing-source", ("build", "/tmp/nosuch.bpf.c"), 2, "/tmp/nosuch.bpf.c: no such file"),
    BadInput("not-an-object", ("load", "/tmp/fake.bpf.o"), 2,
             "/tmp/fake.bpf.o is not a BPF object file: compile the policy with 'memcg-bpf build FILE.bpf.c'",
             setup="fake-object"),
    BadInput("set-without-value", ("load", "reclaim_boost", "--set", "reclaim_pages"), 2,
             "--set 'reclaim_pages': write KNOB=VALUE, e.g. --set reclaim_pages=64"),
    BadInput("unknown-knob", ("load", "reclaim_boost", "--set", "nope=1"), 2, f"unknown knob 'nope'; {KNOBS}"),
    BadInput("knob-not-a-number", ("load", "reclaim_boost", "--set", "reclaim_pages=abc"), 2,
             "knob reclaim_pages takes an unsigned 32-bit integer, got 'abc'"),
    BadInput("knob-negative", ("load", "reclaim_boost", "--set", "reclaim_pages=-1"), 2,
             "knob reclaim_pages takes an unsigned 32-bit integer (0..4294967295), got -1"),
    BadInput("knob-above-range", ("load", "reclaim_boost", "--set", "reclaim_pages=1000"), 2,
             "knob reclaim_pages must be in 1..512, got 1000"),
    BadInput("knob-zero", ("load", "reclaim_boost", "--set", "reclaim_pages=0"), 2,
             "knob reclaim_pages must be in 1..512, got 0"),
    BadInput("knob-no-such-cgroup", ("load", "reclaim_boost", "--set", "cgroup_ids=/no/such"), 2,
             "knob cgroup_ids: '/no/such' is neither a cgroup id nor a cgroup under /sys/fs/cgroup"),
    BadInput("knob-cgroup-outside", ("load", "reclaim_boost", "--set", "cgroup_ids=../../../etc"), 2,
             "knob cgroup_ids: cgroup '../../../etc' is outside the cgroup2 mount /sys/fs/cgroup: "
             "name a cgroup under it"),
    BadInput("unload-nothing", ("unload",), 2, "name one policy or pass --all (see 'memcg-bpf list')"),
    BadInput("unload-name-and-all", ("unload", "telemetry", "--all"), 2,
             "name one policy or pass --all (see 'memcg-bpf list')"),
    BadInput("unload-bad-name", ("unload", "a/b"), 2, f"bad policy name 'a/b': {BAD_NAME}"),
    BadInput("stats-json-and-prometheus", ("stats", "telemetry", "--json", "--prometheus"), 2,
             "--json excludes --prometheus and --textfile: pick one"),
    # Objects the loader refuses before the kernel sees them, and the verifier.
    BadInput("object-without-memcg-ops", ("load", "{obj:no_ops}"), 2,
             "… has no memcg_ops struct_ops map: declare one as SEC(\".struct_ops.link\") struct memcg_ops ..."),
    BadInput("legacy-struct-ops-map", ("load", "{obj:observe-legacy}"), 2,
             "map observe_ops in … is a legacy .struct_ops map: declare it SEC(\".struct_ops.link\") "
             "so it can be pinned and unloaded"),
    BadInput("verifier-long-log", ("load", "{obj:bad_write-long}"), 1,
             "the kernel rejected …: cannot load BPF object …: Permission denied (EACCES)",
             shows="memcg_ops: write to try_charge_memcg at off 8 size 4, only nr_pages (off 16 size 8) is writable"),
    BadInput("clang-error", ("build", "/tmp/broken.bpf.c"), 1, "clang failed to compile /tmp/broken.bpf.c",
             setup="broken-c", shows="error:"),
    # The state of the machine.
    BadInput("unload-not-loaded", ("unload", "nosuch"), 1, NOT_LOADED),
    BadInput("stats-not-loaded", ("stats", "nosuch"), 1, NOT_LOADED),
    BadInput("replace-not-loaded", ("load", "noop", "--replace", "nosuch"), 1, NOT_LOADED),
    BadInput("held-by-our-policy", ("load", "noop"), 1,
             "the root cgroup already has policy 'telemetry' attached: replace it with "
             "'memcg-bpf load POLICY --replace telemetry', or run 'memcg-bpf unload telemetry' first",
             setup="telemetry"),
    BadInput("name-in-use", ("load", "noop", "--name", "telemetry"), 2,
             "a policy named 'telemetry' is already loaded: unload it or pass --name", setup="telemetry"),
    BadInput("held-by-another-program", ("load", "telemetry"), 1,
             "the root cgroup already has a policy memcg-bpf did not load (link id …, struct_ops map "
             "id …): unregister it first, e.g. 'bpftool link detach id …'", setup="foreign"),
    BadInput("stats-damaged-pins", ("stats", "damaged"), 1,
             "policy damaged cannot be read: /sys/fs/bpf/memcg-bpf/damaged has no link pin; "
             "remove it with 'memcg-bpf unload damaged'", setup="damaged"),
    BadInput("no-bpffs", ("load", "telemetry"), 1,
             "bpffs is not mounted at /sys/fs/bpf: run 'mount -t bpf bpf /sys/fs/bpf'", setup="no-bpffs"),
    BadInput("list-no-bpffs", ("list",), 1,
             "bpffs is not mounted at /sys/fs/bpf: run 'mount -t bpf bpf /sys/fs/bpf'", setup="no-bpffs"),
    # Privileges.
    BadInput("load-not-root", ("load", "telemetry"), 1,
             f"memcg-bpf load needs CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: {CAPS}", user="nobody"),
    BadInput("list-not-root-bpffs-0700", ("list",), 1,
             f"memcg-bpf list needs CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: {CAPS}", user="nobody",
             setup="bpffs-0700"),
    BadInput("stats-not-root", ("stats", "telemetry"), 1,
             f"memcg-bpf stats needs CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: {CAPS}", user="nobody"),
    BadInput("unload-not-root", ("unload", "--all"), 1,
             f"memcg-bpf unload needs CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: {CAPS}", user="nobody"),
    BadInput("load-root-without-caps", ("load", "telemetry"), 1,
             f"memcg-bpf load needs CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON: {CAPS}", user="no-caps"),
    BadInput("load-without-sys-admin", ("load", "telemetry"), 1,
             f"memcg-bpf load needs CAP_SYS_ADMIN: {CAPS}", user="no-sys-admin"),
    # Where libbpf comes from.
    BadInput("libbpf-env-missing", ("list",), 1,
             "MEMCG_BPF_LIBBPF=/nonexistent/libbpf.so: no such file; point it at a libbpf.so >= 1.2 or unset it",
             env=(("MEMCG_BPF_LIBBPF", "/nonexistent/libbpf.so"),)),
    BadInput("libbpf-too-old", ("list",), 1,
             "/usr/lib/x86_64-linux-gnu/libbpf.so.1 is libbpf 1.1, memcg-bpf needs >= 1.2: "
             "run 'memcg-bpf libbpf build' or set MEMCG_BPF_LIBBPF",
             env=(("MEMCG_BPF_LIBBPF", "/usr/lib/x86_64-linux-gnu/libbpf.so.1"),)),
)


def matches(expected: str, actual: str) -> bool:
    pattern = ".+?".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def shell_word(arg: str) -> str:
    if re.fullmatch(r"[\w./=:{}+-]+", arg):
        return arg
    return "$'" + arg.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def render_table() -> str:
    """The README's table of bad inputs."""
    lines = ["| # | situation | command | exit | error (last line of stderr, after `memcg-bpf: error: `) |",
             "|---|---|---|---|---|"]
    for n, row in enumerate(ROWS, 1):
        situation = ", ".join(filter(None, [SETUPS[row.setup],
                                            "" if row.user == "root" else f"as {row.user}",
                                            " ".join(f"{k}={v}" for k, v in row.env)])) or "-"
        argv = " ".join(shell_word(a) for a in row.argv)
        message = row.message.replace("|", "\\|")
        lines.append(f"| {n} | {situation} | `memcg-bpf {argv}` | {row.exit} | {message} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_table())
