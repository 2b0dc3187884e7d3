// SPDX-License-Identifier: GPL-2.0
/*
 * proactive: reclaim ahead of memory.max, so charges rarely stall in reclaim.
 *
 * It keeps cgroups below a fraction of their memory.max, so that their
 * allocations rarely enter direct reclaim.
 *
 * Attach it to a cgroup with a memory.max (memcg-bpf load proactive
 * --cgroup /job --set percent=75). When a charge of a cgroup it governs
 * finds that cgroup, or an ancestor up to where the policy is attached,
 * above percent % of its memory.max, the policy asks for the excess (at
 * least batch_pages) to be reclaimed with bpf_mem_cgroup_reclaim_async():
 * the charging task reclaims it itself on its way back to user space, so
 * the CPU time is its own cgroup's, as proactive reclaim (like a write to
 * memory.reclaim). The nearest such cgroup is reclaimed from.
 *
 * Knobs:
 *   percent      keep usage at or below this % of memory.max, 1..99 (default 80)
 *   batch_pages  the least to ask for at a time, in pages, 1..512 (default 32)
 *   cgroup_ids   up to 16 cgroup ids (or paths) to keep down; none: every cgroup with a memory.max
 * Limits: a request is at most 512 pages (2 MiB with 4 KiB pages) per return to user space; kernel
 * threads and interrupts charge without one. Cgroups without a memory.max are left alone. It
 * looks at most 8 levels up from the charged cgroup.
 * Cost: a walk of up to 8 ancestors per charge that misses the per-cpu stock.
 */
#include "memcg_bpf.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_CGROUPS 16
#define MAX_LEVELS 8
#define NO_LIMIT (0x7fffffffffffffffUL / 4096)	/* PAGE_COUNTER_MAX, 4 KiB pages */
#define EBUSY 16
#define EOPNOTSUPP 95

const volatile __u32 percent = 80;
const volatile __u32 batch_pages = 32;
const volatile memcg_bpf_cgid_t cgroup_ids[MAX_CGROUPS];

extern int bpf_mem_cgroup_reclaim_async(struct try_charge_memcg *tcm, __u64 id, __u32 nr_pages) __ksym;

struct proactive_stats {
	struct memcg_bpf_slot_head head;
	__u64 requests;		/* reclaim requests accepted */
	__u64 pages_requested;	/* pages they asked for */
	__u64 refused;		/* requests the kernel refused */
	__u64 usage_pages MEMCG_BPF_GAUGE;	/* usage when last asked */
	__u64 max_pages MEMCG_BPF_GAUGE;	/* memory.max when last asked */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct proactive_stats);
} cgroups SEC(".maps");

/* Charges no request could be made for: a kernel thread or softirq charged, or reclaim did. */
__u64 not_user_task;

static bool selected(memcg_bpf_cgid_t id)
{
	bool any = false;

	for (int i = 0; i < MAX_CGROUPS; i++) {
		if (!cgroup_ids[i])
			continue;
		if (cgroup_ids[i] == id)
			return true;
		any = true;
	}
	return !any;
}

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(proactive_try_charge, struct try_charge_memcg *tcm)
{
	struct mem_cgroup *pos = tcm->memcg;
	struct proactive_stats *s;

	for (int level = 0; level < MAX_LEVELS && pos; level++) {
		unsigned long usage = pos->memory.usage.counter;
		unsigned long max = pos->memory.max;
		memcg_bpf_cgid_t id = memcg_bpf_cgid(pos);
		unsigned long keep, want;
		int err;

		keep = max / 100 * percent;
		if (max < NO_LIMIT && usage > keep && selected(id)) {
			want = usage - keep;
			if (want < batch_pages)
				want = batch_pages;
			err = bpf_mem_cgroup_reclaim_async(tcm, id, want > 512 ? 512 : want);
			if (err == -EOPNOTSUPP || err == -EBUSY) {
				__sync_fetch_and_add(&not_user_task, 1);
				return 0;
			}
			s = memcg_bpf_slot(&cgroups, pos, struct proactive_stats);
			if (!s)
				return 0;
			if (err) {
				/* -ENOENT: above where the policy is attached. */
				__sync_fetch_and_add(&s->refused, 1);
				return 0;
			}
			__sync_fetch_and_add(&s->requests, 1);
			__sync_fetch_and_add(&s->pages_requested, want > 512 ? 512 : want);
			s->usage_pages = usage;
			s->max_pages = max;
			return 0;
		}
		if (!pos->css.parent)
			break;
		pos = bpf_core_cast(pos->css.parent, struct mem_cgroup);
	}
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops proactive_ops = {
	.try_charge_memcg = (void *)proactive_try_charge,
};
