// SPDX-License-Identifier: GPL-2.0
/*
 * Test program: a handler that allocates accounted memory with interrupts
 * disabled, through bpf_timer_init(), which the kernel charges to the
 * cgroup of the map's creator. Without the kernel's re-entry guard that
 * allocation runs the handler again, nested in itself:
 *
 *  -DLAZY   the textbook "initialise the timer on first use" per CPU; the
 *           element is reset now and then so that it is initialised again.
 *           A nested call tries to lock the same timer: AA deadlock.
 *  default  a fresh timer on every call: a nested call corrupts the
 *           per-cpu saved interrupt state of the BPF spin lock.
 *
 * It counts its calls, the timer inits, and the calls that found another
 * call of the same task in progress (nested; must stay 0).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define NR_TIMERS 256
#define CLOCK_MONOTONIC 1

struct elem {
	struct bpf_timer timer;
	__u64 inited;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_TIMERS);
	__type(key, __u32);
	__type(value, struct elem);
} timers SEC(".maps");

/* thread id -> handler calls of that thread in progress */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} depth SEC(".maps");

__u64 calls;
__u64 inits;
__u64 init_errors;
__u64 resets;
__u64 nested;
__u64 max_depth;
__u64 next_timer;

static void reset(__u32 key)
{
	struct elem zero = {};

	/* Replacing an array element frees the timer it held. */
	if (!bpf_map_update_elem(&timers, &key, &zero, BPF_ANY))
		__sync_fetch_and_add(&resets, 1);
}

static void init(struct elem *e)
{
	if (bpf_timer_init(&e->timer, &timers, CLOCK_MONOTONIC)) {
		__sync_fetch_and_add(&init_errors, 1);
		return;
	}
	e->inited = 1;
	__sync_fetch_and_add(&inits, 1);
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(reentry_charge, struct try_charge_memcg *tcm)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 zero = 0, *d, before;
	struct elem *e;
	__u32 key;

	d = bpf_map_lookup_elem(&depth, &tid);
	if (!d) {
		bpf_map_update_elem(&depth, &tid, &zero, BPF_NOEXIST);
		d = bpf_map_lookup_elem(&depth, &tid);
		if (!d)
			return 0;
	}
	before = __sync_fetch_and_add(d, 1);
	if (before) {
		__sync_fetch_and_add(&nested, 1);
		if (before + 1 > max_depth)
			max_depth = before + 1;
	}
	__sync_fetch_and_add(&calls, 1);

#ifdef LAZY
	key = bpf_get_smp_processor_id() % NR_TIMERS;
	e = bpf_map_lookup_elem(&timers, &key);
	if (e) {
		if (!e->inited)
			init(e);
		else if (calls % 4 == 0)
			reset(key);
	}
#else
	key = __sync_fetch_and_add(&next_timer, 1) % NR_TIMERS;
	e = bpf_map_lookup_elem(&timers, &key);
	if (e) {
		if (e->inited) {
			reset(key);
			e = bpf_map_lookup_elem(&timers, &key);
		}
		if (e)
			init(e);
	}
#endif

	__sync_fetch_and_add(d, -1);
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops reentry_ops = {
	.try_charge_memcg = (void *)reentry_charge,
};
