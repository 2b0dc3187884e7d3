// SPDX-License-Identifier: GPL-2.0
/*
 * The per-cgroup counting of the telemetry policy, done the way users can
 * without the memcg_ops patch: a fentry or a kprobe program on
 * try_charge_memcg(). Only one of the two is loaded at a time.
 *
 * At function entry the outcome of the charge is unknown, so only what is
 * knowable is counted: calls, pages requested, atomic vs blocking, last
 * event time. Every charge enters try_charge_memcg(), including those the
 * per-cpu stock serves, which the memcg_ops hook never sees.
 */
#include "memcg_bpf.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct cgroup_stats {
	__u64 calls;
	__u64 pages_requested;
	__u64 atomic;
	__u64 blocking;
	__u64 last_event_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, memcg_bpf_cgid_t);
	__type(value, struct cgroup_stats);
} cgroups SEC(".maps");

__u64 total_calls;
__u64 total_pages_requested;
__u64 dropped_cgroups;

static __always_inline void count(memcg_bpf_cgid_t id, gfp_t gfp_mask, __u64 nr_pages)
{
	struct cgroup_stats *s, zero = {};

	__sync_fetch_and_add(&total_calls, 1);
	__sync_fetch_and_add(&total_pages_requested, nr_pages);
	s = memcg_bpf_lookup_or_init(&cgroups, &id, &zero);
	if (!s) {
		__sync_fetch_and_add(&dropped_cgroups, 1);
		return;
	}
	__sync_fetch_and_add(&s->calls, 1);
	__sync_fetch_and_add(&s->pages_requested, nr_pages);
	if (gfp_mask & MEMCG_BPF_GFP_DIRECT_RECLAIM)
		__sync_fetch_and_add(&s->blocking, 1);
	else
		__sync_fetch_and_add(&s->atomic, 1);
	s->last_event_ns = bpf_ktime_get_ns();
}

SEC("fentry/try_charge_memcg")
int BPF_PROG(count_fentry, struct mem_cgroup *memcg, gfp_t gfp_mask, unsigned int nr_pages)
{
	count(memcg_bpf_cgid(memcg), gfp_mask, nr_pages);
	return 0;
}

SEC("kprobe/try_charge_memcg")
int BPF_KPROBE(count_kprobe, struct mem_cgroup *memcg, gfp_t gfp_mask, unsigned int nr_pages)
{
	count(BPF_CORE_READ(memcg, css.cgroup, kn, id), gfp_mask, nr_pages);
	return 0;
}
