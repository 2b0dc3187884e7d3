from __future__ import annotations

from memcg_bpf.testbed.vm.splat import find_splats

CLEAN = """\
[    0.000000] Linux version 6.12.117+
[    0.512000] 'struct module' btf id not found. Is CONFIG_MODULES enabled? bpf_struct_ops 'tcp_congestion_ops' needs module support.
[    1.000000] Run /init as init process
[    1.900000] reboot: Restarting system
"""

SPLATS = {
    "warn": "[    1.2] WARNING: CPU: 1 PID: 77 at mm/memcontrol.c:2200 try_charge_memcg+0x1/0x2",
    "bug": "[    1.2] BUG: sleeping function called from invalid context at mm/vmscan.c:1",
    "oops": "[    1.2] Oops: general protection fault, probably for non-canonical address",
    "lockdep": "[    1.2] WARNING: possible circular locking dependency detected",
    "rcu-usage": "[    1.2] WARNING: suspicious RCU usage",
    "rcu-stall": "[   30.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "hung": "[  150.0] INFO: task memhog:80 blocked for more than 120 seconds.",
    "kasan": "[    1.2] BUG: KASAN: slab-use-after-free in memcg_ops_unreg+0x10/0x20",
    "panic": "[    1.2] Kernel panic - not syncing: Fatal exception",
    "lockup": "[   30.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [memhog:80]",
}


def test_clean_boot_has_no_splat() -> None:
    assert find_splats(CLEAN) == []


def test_every_kind_of_splat_is_found_with_context() -> None:
    for kind, line in SPLATS.items():
        log = CLEAN + line + "\n[    1.3] Call Trace:\n[    1.3]  <TASK>\n"
        splats = find_splats(log)
        assert splats, kind
        assert splats[0].line == line.split("] ", 1)[1].strip(), kind
        assert "Call Trace:" in splats[0].excerpt, kind
