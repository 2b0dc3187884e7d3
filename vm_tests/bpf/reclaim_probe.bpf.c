// SPDX-License-Identifier: GPL-2.0
/*
 * Test program, independent of any policy: every call of
 * try_to_free_mem_cgroup_pages(), by kind (proactive or direct), with the
 * cgroup and pid of the task that runs it, the cgroup reclaimed from, and
 * the time it took. It shows who pays for reclaim a policy asked for.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define PF_KTHREAD 0x00200000

struct key {
	__u64 runner_cgroup;	/* cgroup of the task that reclaims */
	__u64 target_cgroup;	/* cgroup reclaimed from */
	__u32 proactive;	/* MEMCG_RECLAIM_PROACTIVE was set */
	__u32 kthread;		/* the task is a kernel thread */
};

struct value {
	__u64 calls;
	__u64 ns;
	__u64 asked;		/* sum of nr_pages */
	__u64 reclaimed;	/* sum of what it returned */
	__u64 last_pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct key);
	__type(value, struct value);
} reclaims SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} started SEC(".maps");

SEC("fentry/try_to_free_mem_cgroup_pages")
int BPF_PROG(probe_enter, struct mem_cgroup *memcg, unsigned long nr_pages)
{
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();

	bpf_map_update_elem(&started, &pid, &now, BPF_ANY);
	return 0;
}

SEC("fexit/try_to_free_mem_cgroup_pages")
int BPF_PROG(probe_exit, struct mem_cgroup *memcg, unsigned long nr_pages, gfp_t gfp_mask,
	     unsigned int reclaim_options, int *swappiness, unsigned long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 pid = (__u32)bpf_get_current_pid_tgid();
	struct key key = {
		.runner_cgroup = bpf_get_current_cgroup_id(),
		.target_cgroup = memcg ? memcg->css.cgroup->kn->id : 0,
		.proactive = !!(reclaim_options & MEMCG_BPF_RECLAIM_PROACTIVE),
		.kthread = !!(task->flags & PF_KTHREAD),
	};
	struct value zero = {}, *v;
	__u64 *start = bpf_map_lookup_elem(&started, &pid);

	bpf_map_update_elem(&reclaims, &key, &zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&reclaims, &key);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->calls, 1);
	__sync_fetch_and_add(&v->asked, nr_pages);
	__sync_fetch_and_add(&v->reclaimed, ret);
	if (start)
		__sync_fetch_and_add(&v->ns, bpf_ktime_get_ns() - *start);
	v->last_pid = pid;
	return 0;
}
