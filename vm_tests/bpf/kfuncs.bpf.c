// SPDX-License-Identifier: GPL-2.0
/*
 * Test program: a below_low handler (patch 5) that calls every memcg read
 * kfunc (patch 6) on its trusted arguments and records what they return.
 * It keeps the kernel's answer.
 *
 * Page-state counters are the flushed (rstat) values, so they may lag:
 * anon_max keeps the largest anon any call saw.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern struct mem_cgroup *bpf_get_root_mem_cgroup(void) __ksym;
extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_usage(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_memory_events(struct mem_cgroup *memcg,
						  enum memcg_memory_event event) __ksym;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym;
extern unsigned long bpf_mem_cgroup_vm_events(struct mem_cgroup *memcg,
					      enum vm_event_item event) __ksym;

__u64 calls, usage, anon, anon_max, max_events, pgfault, root_usage, got_usage;
__u64 bad_state, bad_event, bad_memevent;
__u64 memcg_id, target_id;

SEC("struct_ops/below_low")
int BPF_PROG(kfuncs_below_low, struct mem_cgroup *target, struct mem_cgroup *memcg, bool below)
{
	struct mem_cgroup *root, *same;

	calls++;
	memcg_id = memcg->css.cgroup->kn->id;
	target_id = target->css.cgroup->kn->id;
	usage = bpf_mem_cgroup_usage(memcg);
	anon = bpf_mem_cgroup_page_state(memcg, NR_ANON_MAPPED);
	if (anon > anon_max)
		anon_max = anon;
	max_events = bpf_mem_cgroup_memory_events(target, MEMCG_MAX);
	pgfault = bpf_mem_cgroup_vm_events(memcg, PGFAULT);
	bad_state = bpf_mem_cgroup_page_state(memcg, 100000);
	bad_event = bpf_mem_cgroup_vm_events(memcg, (enum vm_event_item)100000);
	bad_memevent = bpf_mem_cgroup_memory_events(memcg, (enum memcg_memory_event)1000);
	root = bpf_get_root_mem_cgroup();
	if (root) {
		root_usage = bpf_mem_cgroup_usage(root);
		bpf_put_mem_cgroup(root);
	}
	same = bpf_get_mem_cgroup(&memcg->css);
	if (same) {
		got_usage = bpf_mem_cgroup_usage(same);
		bpf_put_mem_cgroup(same);
	}
	return -1;
}

SEC(".struct_ops.link")
struct memcg_ops kfuncs_ops = {
	.below_low = (void *)kfuncs_below_low,
};
