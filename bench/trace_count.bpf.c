// SPDX-License-Identifier: GPL-2.0
/*
 * The per-cgroup counting of the telemetry policy, done the way users can
 * without the memcg_ops patch: a fentry or a kprobe program on
 * try_charge_memcg(). Only one of the two is loaded at a time. It keeps the
 * same table as telemetry (memcg_bpf_slot(): an array indexed by the memory
 * cgroup's id), so that what differs is how the program is called, and how
 * often.
 *
 * At function entry the outcome of the charge is unknown, so only what is
 * knowable is counted: calls, pages requested, atomic vs blocking. Every charge enters try_charge_memcg(), including those the
 * per-cpu stock serves, which the memcg_ops hook never sees.
 */
#include "memcg_bpf.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_SLOTS 4096

struct cgroup_stats {
	struct memcg_bpf_slot_head head;
	__u64 calls;
	__u64 pages_requested;
	__u64 atomic;
	__u64 blocking;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct cgroup_stats);
} cgroups SEC(".maps");

__u64 dropped_calls;

static __always_inline void count(struct cgroup_stats *s, gfp_t gfp_mask, __u64 nr_pages)
{
	if (!s) {
		__sync_fetch_and_add(&dropped_calls, 1);
		return;
	}
	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->pages_requested, nr_pages);
	if (gfp_mask & MEMCG_BPF_GFP_DIRECT_RECLAIM)
		__sync_fetch_and_add(&s->blocking, 1);
	else
		__sync_fetch_and_add(&s->atomic, 1);
}

SEC("fentry/try_charge_memcg")
int BPF_PROG(count_fentry, struct mem_cgroup *memcg, gfp_t gfp_mask, unsigned int nr_pages)
{
	count(memcg_bpf_slot(&cgroups, memcg, struct cgroup_stats), gfp_mask, nr_pages);
	return 0;
}

SEC("kprobe/try_charge_memcg")
int BPF_KPROBE(count_kprobe, struct mem_cgroup *memcg, gfp_t gfp_mask, unsigned int nr_pages)
{
	/* A kprobe sees plain addresses: the same slot lookup, with explicit reads. */
	__u32 index = BPF_CORE_READ(memcg, css.id);
	struct cgroup_stats *s = bpf_map_lookup_elem(&cgroups, &index);

	if (s && s->head.memcg != (__u64)memcg) {
		struct cgroup_stats fresh = {};

		fresh.head.cgroup = BPF_CORE_READ(memcg, css.cgroup, kn, id);
		fresh.head.memcg = (__u64)memcg;
		bpf_map_update_elem(&cgroups, &index, &fresh, BPF_ANY);
	}
	count(s, gfp_mask, nr_pages);
	return 0;
}
