// SPDX-License-Identifier: GPL-2.0
/*
 * priority: protect chosen cgroups from the reclaim of the limit above them.
 *
 * Attach it to the cgroup whose limit the jobs share (memcg-bpf load
 * priority --cgroup /workload --set cgroup_ids=/workload/service). When
 * that limit is enforced, reclaim treats each selected cgroup as within
 * its memory.low (or with hard=1 its memory.min), whatever memory.low
 * says, so the other cgroups give memory first. With idle_ms, a selected
 * cgroup is protected only while it is active: it charged memory within
 * the last idle_ms milliseconds; an idle service leaves its memory to the
 * batch work next to it. Cgroups not selected keep the kernel's answer.
 * When a cgroup it governs goes over memory.high, tasks of an active
 * selected cgroup are not put to sleep for it (with spare_high=1): the
 * batch side alone is throttled, by the kernel's delay. Reclaim for
 * memory.high still runs for everyone.
 *
 * Knobs:
 *   cgroup_ids  up to 16 cgroup ids (or paths) to protect
 *   hard        1: protect as memory.min (never reclaimed; can OOM the others), 0..1 (default 0)
 *   idle_ms     protect only if the cgroup charged within this many ms; 0: always, 0..3600000 (default 0)
 *   spare_high  1: never throttle an active selected cgroup for memory.high, 0..1 (default 1)
 * Cost: a short loop over cgroup_ids per reclaim decision and per charge.
 */
#include "memcg_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_CGROUPS 16

const volatile memcg_bpf_cgid_t cgroup_ids[MAX_CGROUPS];
const volatile __u32 hard = 0;
const volatile __u32 idle_ms = 0;
const volatile __u32 spare_high = 1;

struct priority_stats {
	struct memcg_bpf_slot_head head;
	__u64 protected;	/* reclaim decisions that protected the cgroup */
	__u64 idle_exposed;	/* decisions that left it to the kernel: idle */
	__u64 charges;		/* charges seen (with idle_ms) */
	__u64 unthrottled;	/* memory.high sleeps it was spared */
	__u64 last_charge_ns;	/* when it last charged */
	__u64 activations;	/* idle -> active switches (with idle_ms) */
	__u64 activated_ns;	/* when it last became active: its first charge after idle_ms or more */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct priority_stats);
} cgroups SEC(".maps");

static bool selected(memcg_bpf_cgid_t id)
{
	for (int i = 0; i < MAX_CGROUPS; i++) {
		if (cgroup_ids[i] && cgroup_ids[i] == id)
			return true;
	}
	return false;
}

/* The slot of memcg if it is selected and active, else NULL. */
static struct priority_stats *active(struct mem_cgroup *memcg)
{
	struct priority_stats *s;

	if (!selected(memcg_bpf_cgid(memcg)))
		return NULL;
	s = memcg_bpf_slot(&cgroups, memcg, struct priority_stats);
	if (s && idle_ms && bpf_ktime_get_ns() - s->last_charge_ns > (__u64)idle_ms * 1000000) {
		__sync_fetch_and_add(&s->idle_exposed, 1);
		return NULL;
	}
	return s;
}

static int decide(struct mem_cgroup *memcg)
{
	struct priority_stats *s = active(memcg);

	if (!s)
		return -1;	/* the kernel's answer */
	__sync_fetch_and_add(&s->protected, 1);
	return 1;
}

SEC("struct_ops/below_low")
int BPF_PROG(priority_below_low, struct mem_cgroup *target, struct mem_cgroup *memcg, bool below)
{
	return decide(memcg);
}

SEC("struct_ops/below_min")
int BPF_PROG(priority_below_min, struct mem_cgroup *target, struct mem_cgroup *memcg, bool below)
{
	return hard ? decide(memcg) : -1;
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(priority_try_charge, struct try_charge_memcg *tcm)
{
	struct priority_stats *s;

	if (!idle_ms || !selected(memcg_bpf_cgid(tcm->memcg)))
		return 0;
	s = memcg_bpf_slot(&cgroups, tcm->memcg, struct priority_stats);
	if (s) {
		__u64 now = bpf_ktime_get_ns();

		__sync_fetch_and_add(&s->charges, 1);
		/* Protection starts from here: the moment a userspace controller would write memory.low. */
		if (!s->last_charge_ns || now - s->last_charge_ns > (__u64)idle_ms * 1000000) {
			__sync_fetch_and_add(&s->activations, 1);
			s->activated_ns = now;
		}
		s->last_charge_ns = now;
	}
	return 0;
}

SEC("struct_ops/high_delay")
long BPF_PROG(priority_high_delay, struct mem_cgroup *memcg, struct mem_cgroup *over_high,
	      unsigned int nr_pages, unsigned long delay)
{
	struct priority_stats *s;

	if (!spare_high)
		return -1;
	s = active(memcg);
	if (!s)
		return -1;	/* the kernel's delay */
	if (delay)
		__sync_fetch_and_add(&s->unthrottled, 1);
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops priority_ops = {
	.below_low = (void *)priority_below_low,
	.below_min = (void *)priority_below_min,
	.try_charge_memcg = (void *)priority_try_charge,
	.high_delay = (void *)priority_high_delay,
};
