// SPDX-License-Identifier: GPL-2.0
/*
 * reclaim_boost: reclaim more per failed charge in chosen cgroups.
 *
 * When a charge of a selected cgroup fails against a limit, ask direct
 * reclaim for reclaim_pages pages instead of the size of the charge, so
 * that one round of reclaim makes room for several later charges. Charges
 * of at least reclaim_pages pages keep their own size as the target.
 *
 * Knobs:
 *   reclaim_pages  pages to reclaim per failed charge, 1..512 (default 128)
 *   cgroup_ids     up to 16 cgroup ids (or paths) to boost; none: all
 * Cost: a short loop over cgroup_ids per hook call.
 */
#include "memcg_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define MAX_CGROUPS 16

const volatile __u32 reclaim_pages = 128;
const volatile memcg_bpf_cgid_t cgroup_ids[MAX_CGROUPS];

struct boost_stats {
	__u64 failed_charges;	/* failed charges seen in selected cgroups */
	__u64 boosted;		/* of those, reclaim target raised */
	__u64 pages_requested;	/* sum of the original targets */
	__u64 pages_targeted;	/* sum of the targets asked for */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, memcg_bpf_cgid_t);
	__type(value, struct boost_stats);
} boosted SEC(".maps");

__u64 total_boosted;

static bool selected(memcg_bpf_cgid_t id)
{
	bool any = false;

	for (int i = 0; i < MAX_CGROUPS; i++) {
		if (!cgroup_ids[i])
			continue;
		any = true;
		if (cgroup_ids[i] == id)
			return true;
	}
	return !any;
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(reclaim_boost_try_charge, struct try_charge_memcg *tcm)
{
	memcg_bpf_cgid_t id;
	struct boost_stats *s, zero = {};
	__u64 nr_pages;

	if (tcm->charge_done)
		return 0;
	id = memcg_bpf_cgid(tcm->memcg);
	if (!selected(id))
		return 0;

	s = memcg_bpf_lookup_or_init(&boosted, &id, &zero);
	if (!s)
		return 0;
	nr_pages = tcm->nr_pages;
	__sync_fetch_and_add(&s->failed_charges, 1);
	__sync_fetch_and_add(&s->pages_requested, nr_pages);
	if (nr_pages >= reclaim_pages) {
		__sync_fetch_and_add(&s->pages_targeted, nr_pages);
		return 0;
	}
	tcm->nr_pages = reclaim_pages;
	__sync_fetch_and_add(&s->boosted, 1);
	__sync_fetch_and_add(&s->pages_targeted, reclaim_pages);
	__sync_fetch_and_add(&total_boosted, 1);
	return MEMCG_BPF_SET_RECLAIM;
}

SEC(".struct_ops.link")
struct memcg_ops reclaim_boost_ops = {
	.try_charge_memcg = (void *)reclaim_boost_try_charge,
};
