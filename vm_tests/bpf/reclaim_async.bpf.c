// SPDX-License-Identifier: GPL-2.0
/*
 * Test program: a try_charge_memcg handler (patch 3) that asks for reclaim
 * with bpf_mem_cgroup_reclaim_async() (patch 8) on every call, for the
 * cgroup and page count in cfg, and counts what the kfunc returns.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define EINVAL 22
#define ENOENT 2
#define EBUSY 16
#define EOPNOTSUPP 95

extern int bpf_mem_cgroup_reclaim_async(struct try_charge_memcg *tcm, __u64 id, __u32 nr_pages) __ksym;

enum { CFG_CGROUP, CFG_NR_PAGES, CFG_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CFG_MAX);
	__type(key, __u32);
	__type(value, __u64);
} cfg SEC(".maps");

__u64 calls, ok, enoent, einval, eopnotsupp, ebusy, other, last_other;

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(reclaim_async_charge, struct try_charge_memcg *tcm)
{
	__u32 k_cgroup = CFG_CGROUP, k_pages = CFG_NR_PAGES;
	__u64 *cgroup = bpf_map_lookup_elem(&cfg, &k_cgroup);
	__u64 *pages = bpf_map_lookup_elem(&cfg, &k_pages);
	int err;

	if (!cgroup || !pages)
		return 0;
	err = bpf_mem_cgroup_reclaim_async(tcm, *cgroup, *pages);
	__sync_fetch_and_add(&calls, 1);
	switch (err) {
	case 0:
		__sync_fetch_and_add(&ok, 1);
		break;
	case -ENOENT:
		__sync_fetch_and_add(&enoent, 1);
		break;
	case -EINVAL:
		__sync_fetch_and_add(&einval, 1);
		break;
	case -EOPNOTSUPP:
		__sync_fetch_and_add(&eopnotsupp, 1);
		break;
	case -EBUSY:
		__sync_fetch_and_add(&ebusy, 1);
		break;
	default:
		__sync_fetch_and_add(&other, 1);
		last_other = err;
	}
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops reclaim_async_ops = {
	.try_charge_memcg = (void *)reclaim_async_charge,
};
