// SPDX-License-Identifier: GPL-2.0
/*
 * telemetry: per-cgroup charge and reclaim counters; never changes behaviour.
 *
 * For every cgroup that charges (keyed by cgroup id): hook calls,
 * successful and failed charge attempts, pages requested, a log2 histogram
 * of the reclaim targets of failed attempts, atomic vs blocking attempts,
 * and the time of the last event. Totals are kept in globals.
 *
 * Knobs: none. The map holds up to 1024 cgroups; events of further cgroups
 * are counted in dropped_cgroups.
 * Cost: one hash lookup and a few atomic adds per hook call (one call per
 * charge that misses the per-cpu stock, and per failed attempt).
 */
#include "memcg_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define RECLAIM_BUCKETS 10	/* log2 of 1..512 pages */

struct cgroup_stats {
	__u64 calls;
	__u64 charged;
	__u64 failed;
	__u64 pages_requested;
	__u64 atomic;
	__u64 blocking;
	__u64 reclaim_log2_pages[RECLAIM_BUCKETS];
	__u64 last_event_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, memcg_bpf_cgid_t);
	__type(value, struct cgroup_stats);
} cgroups SEC(".maps");

__u64 total_calls;
__u64 total_charged;
__u64 total_failed;
__u64 total_pages_requested;
__u64 dropped_cgroups;	/* events not counted because the map was full */

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(telemetry_try_charge, struct try_charge_memcg *tcm)
{
	memcg_bpf_cgid_t id = memcg_bpf_cgid(tcm->memcg);
	__u64 nr_pages = tcm->nr_pages;
	struct cgroup_stats *s, zero = {};

	__sync_fetch_and_add(&total_calls, 1);
	__sync_fetch_and_add(&total_pages_requested, nr_pages);
	if (tcm->charge_done)
		__sync_fetch_and_add(&total_charged, 1);
	else
		__sync_fetch_and_add(&total_failed, 1);

	s = memcg_bpf_lookup_or_init(&cgroups, &id, &zero);
	if (!s) {
		__sync_fetch_and_add(&dropped_cgroups, 1);
		return 0;
	}

	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->pages_requested, nr_pages);
	if (tcm->gfp_mask & MEMCG_BPF_GFP_DIRECT_RECLAIM)
		__sync_fetch_and_add(&s->blocking, 1);
	else
		__sync_fetch_and_add(&s->atomic, 1);
	if (tcm->charge_done) {
		__sync_fetch_and_add(&s->charged, 1);
	} else {
		__u32 bucket = memcg_bpf_log2(nr_pages);

		__sync_fetch_and_add(&s->failed, 1);
		if (bucket < RECLAIM_BUCKETS)
			__sync_fetch_and_add(&s->reclaim_log2_pages[bucket], 1);
	}
	s->last_event_ns = bpf_ktime_get_ns();
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops telemetry_ops = {
	.try_charge_memcg = (void *)telemetry_try_charge,
};
