// SPDX-License-Identifier: GPL-2.0
/*
 * telemetry: per-cgroup charge and reclaim counters; never changes behaviour.
 *
 * For every cgroup that charges: hook calls, successful charges, failed
 * attempts (each one followed by a round of direct reclaim), pages
 * requested, a log2 histogram of the reclaim targets of failed attempts,
 * atomic vs blocking attempts, and when the last failed attempt was
 * (CLOCK_MONOTONIC ns).
 *
 * Knobs: none. The table holds the cgroups whose memory cgroup id is below
 * 4096 (ids are small and reused; a machine has that many memory cgroups,
 * dying ones included, only rarely); calls of others are counted in
 * dropped_calls. A cgroup's slot restarts from zero when its id is reused.
 * Cost: an array lookup and a few atomic adds per hook call (one call per
 * charge that misses the per-cpu stock, and per round of reclaim).
 */
#include "memcg_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define RECLAIM_BUCKETS 10	/* log2 of 1..512 pages */
#define MAX_SLOTS 4096

struct cgroup_stats {
	struct memcg_bpf_slot_head head;
	__u64 calls;
	__u64 charged;
	__u64 failed;
	__u64 pages_requested;
	__u64 atomic;
	__u64 blocking;
	__u64 reclaim_log2_pages[RECLAIM_BUCKETS];
	__u64 last_failed_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct cgroup_stats);
} cgroups SEC(".maps");

__u64 dropped_calls;	/* calls of cgroups beyond the table */

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(telemetry_try_charge, struct try_charge_memcg *tcm)
{
	struct cgroup_stats *s = memcg_bpf_slot(&cgroups, tcm->memcg, struct cgroup_stats);
	__u64 nr_pages = tcm->nr_pages;

	if (!s) {
		__sync_fetch_and_add(&dropped_calls, 1);
		return MEMCG_BPF_DEFAULT;
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
		s->last_failed_ns = bpf_ktime_get_ns();
	}
	return MEMCG_BPF_DEFAULT;
}

SEC(".struct_ops.link")
struct memcg_ops telemetry_ops = {
	.try_charge_memcg = (void *)telemetry_try_charge,
};
