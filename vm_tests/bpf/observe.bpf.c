// SPDX-License-Identifier: GPL-2.0
/*
 * Test program: records what the memcg_ops hook sees, optionally rewrites
 * the reclaim target, and records the nr_pages argument that
 * try_to_free_mem_cgroup_pages() actually receives (fentry), so the tests
 * can check the override end to end.
 *
 * Built twice: as a .struct_ops.link map (default) and, with -DLEGACY, as a
 * legacy .struct_ops map registered by a map update.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

enum {
	STAT_CALLS,
	STAT_DONE,
	STAT_FAILED,
	STAT_DONE_WITH_OVER,	/* charge_done with mem_over_limit != NULL: must stay 0 */
	STAT_FAILED_NO_OVER,	/* failed with mem_over_limit == NULL: must stay 0 */
	STAT_RECLAIM_CALLS,
	STAT_MAX,
};

enum {
	KNOB_WRITE,		/* non-zero: write KNOB_NR_PAGES on failed charges */
	KNOB_NR_PAGES,
	KNOB_RETVAL,
	KNOB_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KNOB_MAX);
	__type(key, __u32);
	__type(value, __u64);
} knobs SEC(".maps");

struct pair {
	__u64 memcg;
	__u64 over;
};

/* (charged cgroup id, limiting cgroup id) of failed charges -> count */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct pair);
	__type(value, __u64);
} failed_by SEC(".maps");

/* nr_pages of failed charges -> count */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} requested SEC(".maps");

/* nr_pages argument of try_to_free_mem_cgroup_pages() -> count */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u64);
} reclaimed SEC(".maps");

static void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static void bump_hash(void *map, const void *key)
{
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(map, key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

static __u64 knob(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&knobs, &idx);

	return v ? *v : 0;
}

static __u64 cgid(struct mem_cgroup *memcg)
{
	return memcg ? memcg->css.cgroup->kn->id : 0;
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(observe_charge, struct try_charge_memcg *tcm)
{
	bump(STAT_CALLS);
	if (tcm->charge_done) {
		bump(STAT_DONE);
		if (tcm->mem_over_limit)
			bump(STAT_DONE_WITH_OVER);
		return 0;
	}

	struct pair p = { .memcg = cgid(tcm->memcg), .over = cgid(tcm->mem_over_limit) };
	__u64 nr = tcm->nr_pages;

	bump(STAT_FAILED);
	if (!tcm->mem_over_limit)
		bump(STAT_FAILED_NO_OVER);
	bump_hash(&failed_by, &p);
	bump_hash(&requested, &nr);
	if (knob(KNOB_WRITE))
		tcm->nr_pages = knob(KNOB_NR_PAGES);
	return knob(KNOB_RETVAL);
}

SEC("fentry/try_to_free_mem_cgroup_pages")
int BPF_PROG(observe_reclaim, struct mem_cgroup *memcg, unsigned long nr_pages)
{
	__u64 nr = nr_pages;

	bump(STAT_RECLAIM_CALLS);
	bump_hash(&reclaimed, &nr);
	return 0;
}

#ifdef LEGACY
SEC(".struct_ops")
#else
SEC(".struct_ops.link")
#endif
struct memcg_ops observe_ops = {
	.try_charge_memcg = (void *)observe_charge,
};
