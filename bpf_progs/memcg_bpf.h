/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared header for memcg-bpf policies.
 *
 * Conventions the memcg-bpf tool relies on:
 *  - Each policy defines one struct memcg_ops in SEC(".struct_ops.link").
 *  - Knobs are `const volatile` globals (set with `memcg-bpf load --set`).
 *  - A key, field or knob of type memcg_bpf_cgid_t holds a cgroup id; the
 *    tool prints it with the cgroup's path.
 *  - An array map whose values start with struct memcg_bpf_slot_head is a
 *    table of cgroups (see memcg_bpf_slot()); the tool shows its used slots.
 *  - Telemetry lives in maps and globals; `memcg-bpf stats` decodes them
 *    through BTF, so no policy needs a decoder of its own.
 */
#ifndef __MEMCG_BPF_H
#define __MEMCG_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

/* A cgroup id: the inode number of the cgroup's directory in cgroup2. */
typedef __u64 memcg_bpf_cgid_t;

/*
 * How `memcg-bpf stats` treats an integer field or global, when its name
 * does not say it (see memcg_bpf/runtime/fields.py): a counter only grows (summed
 * over CPUs, a Prometheus counter), a gauge is a level (summed over CPUs, a
 * Prometheus gauge), a timestamp is a point in time (the latest over CPUs).
 * E.g. `__u64 wait_ns MEMCG_BPF_COUNTER;` for a total duration.
 */
#define MEMCG_BPF_COUNTER __attribute__((btf_decl_tag("memcg_bpf:counter")))
#define MEMCG_BPF_GAUGE __attribute__((btf_decl_tag("memcg_bpf:gauge")))
#define MEMCG_BPF_TIMESTAMP __attribute__((btf_decl_tag("memcg_bpf:timestamp")))

/*
 * The kernel's constants come with vmlinux.h (enums in BTF): return
 * MEMCG_BPF_SET_RECLAIM to make tcm->nr_pages the reclaim target, which the
 * kernel clamps to at least the charge and at most
 * MEMCG_BPF_MAX_RECLAIM_PAGES; MEMCG_BPF_DEFAULT (0) keeps the default.
 */

/* gfp bits, from the kernel's enum (present in vmlinux.h). */
#define MEMCG_BPF_GFP_DIRECT_RECLAIM (1U << ___GFP_DIRECT_RECLAIM_BIT)

static __always_inline memcg_bpf_cgid_t memcg_bpf_cgid(struct mem_cgroup *memcg)
{
	return memcg ? memcg->css.cgroup->kn->id : 0;
}

/*
 * Per-cgroup slots: an array map indexed by the memory cgroup's css id, which
 * the kernel keeps small and dense, whose value type starts with this head.
 * Cheaper on the charge path than a hash map keyed by cgroup id: no hashing,
 * and the cgroup id (three pointer loads) is read only when a slot starts
 * counting for a cgroup. `memcg-bpf stats` shows only the slots in use,
 * keyed by their cgroup, and not the head.
 */
struct memcg_bpf_slot_head {
	memcg_bpf_cgid_t cgroup;	/* the cgroup the slot counts for; 0: unused */
	__u64 memcg;			/* its struct mem_cgroup: a new one means a recycled id */
};

/*
 * The slot of cgroup_memcg in map (an array of struct type values that
 * start with a struct memcg_bpf_slot_head), zeroed first when it starts
 * counting for that memcg; NULL if its id is beyond the array. Two CPUs that start the
 * same slot at once may lose a few of their first counts.
 */
#define memcg_bpf_slot(map, cgroup_memcg, type) ({				\
	struct mem_cgroup *__memcg = (cgroup_memcg);				\
	__u32 __index = __memcg->css.id;					\
	type *__slot = bpf_map_lookup_elem(map, &__index);			\
										\
	if (__slot && __slot->head.memcg != (__u64)__memcg) {			\
		type __fresh = {};						\
										\
		__fresh.head.cgroup = memcg_bpf_cgid(__memcg);			\
		__fresh.head.memcg = (__u64)__memcg;				\
		bpf_map_update_elem(map, &__index, &__fresh, BPF_ANY);		\
	}									\
	__slot;									\
})

/*
 * The value for key in a hash map, inserted as zero first if missing.
 * NULL only if the map is full.
 */
static __always_inline void *memcg_bpf_lookup_or_init(void *map, const void *key, const void *zero)
{
	void *value = bpf_map_lookup_elem(map, key);

	if (value)
		return value;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* Index of the highest set bit: 0 for 0 and 1, 9 for 512..1023. */
static __always_inline __u32 memcg_bpf_log2(__u64 v)
{
	__u32 r = 0;

#pragma unroll
	for (int shift = 32; shift > 0; shift >>= 1) {
		if (v >> shift) {
			v >>= shift;
			r += shift;
		}
	}
	return r;
}

#endif /* __MEMCG_BPF_H */
