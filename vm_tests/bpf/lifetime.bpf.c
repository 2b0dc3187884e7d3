// SPDX-License-Identifier: GPL-2.0
/*
 * Test program for handler lifetime.
 *
 * ctl[0]: set by userspace once unregistration (or an update away from
 *         this handler) has returned; a call that still runs and sees it
 *         is counted in late_calls, which must stay 0.
 * ctl[1]: while set, a call holds: it spins (nested bpf_loop, bounded: a
 *         minute or more under TCG) until userspace clears it, so that it
 *         is surely in flight when the policy is removed. in_flight counts the calls running now,
 *         last_exit_ns is when the latest call returned.
 * Otherwise the handler spins for "spin" bpf_loop iterations, so that calls
 * are in flight, and can be preempted, when the policy is removed.
 *
 * count_entries (fentry on __memcg_bpf_try_charge) counts the calls the
 * kernel made towards any memcg_ops handler: with the handlers' calls and
 * their recursion_misses it shows that an update leaves no gap.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 spin = 4096;

enum { CTL_DETACHED, CTL_HOLD, CTL_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CTL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ctl SEC(".maps");

__u64 calls;
__u64 late_calls;
__u64 entries;
__u64 in_flight;
__u64 held;
__u64 last_exit_ns;

static bool flag(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&ctl, &key);

	return v && *(volatile __u64 *)v;
}

static long burn(__u64 index, void *ctx)
{
	__u64 *sum = ctx;

	*sum += index * index;
	return 0;
}

/* One step of holding: some work, then stop once ctl[1] is cleared. */
static long hold(__u64 index, void *ctx)
{
	bpf_loop(1024, burn, ctx, 0);
	return flag(CTL_HOLD) ? 0 : 1;
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(lifetime_charge, struct try_charge_memcg *tcm)
{
	__u64 sum = 0;

	if (flag(CTL_DETACHED))
		__sync_fetch_and_add(&late_calls, 1);
	__sync_fetch_and_add(&calls, 1);
	__sync_fetch_and_add(&in_flight, 1);
	if (flag(CTL_HOLD)) {
		__sync_fetch_and_add(&held, 1);
		bpf_loop(1 << 23, hold, &sum, 0);
	} else {
		bpf_loop(spin, burn, &sum, 0);
	}
	if (flag(CTL_DETACHED))
		__sync_fetch_and_add(&late_calls, 1);
	last_exit_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&in_flight, -1);
	return 0;
}

SEC("fentry/__memcg_bpf_try_charge")
int BPF_PROG(count_entries)
{
	__sync_fetch_and_add(&entries, 1);
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops lifetime_ops = {
	.try_charge_memcg = (void *)lifetime_charge,
};
