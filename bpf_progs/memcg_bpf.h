/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared header for memcg-bpf policies.
 *
 * Conventions the memcg-bpf tool relies on:
 *  - Each policy defines one struct memcg_ops in SEC(".struct_ops.link").
 *  - Knobs are `const volatile` globals (set with `memcg-bpf load --set`).
 *  - A key, field or knob of type memcg_bpf_cgid_t holds a cgroup id; the
 *    tool prints it with the cgroup's path.
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

/* Largest reclaim target the kernel honours (one PMD-sized page). */
#define MEMCG_BPF_MAX_RECLAIM 512

/* gfp bits, from the kernel's enum (present in vmlinux.h). */
#define MEMCG_BPF_GFP_DIRECT_RECLAIM (1U << ___GFP_DIRECT_RECLAIM_BIT)

static __always_inline memcg_bpf_cgid_t memcg_bpf_cgid(struct mem_cgroup *memcg)
{
	return memcg ? memcg->css.cgroup->kn->id : 0;
}

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
