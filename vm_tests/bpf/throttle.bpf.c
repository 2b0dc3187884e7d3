// SPDX-License-Identifier: GPL-2.0
/*
 * Test program: a high_delay handler (patch 7) that records the kernel's
 * delays and returns DELAY jiffies (-DDELAY=N; the kernel's own delay
 * without it), and an fentry program that records how long the throttled
 * task really sleeps (schedule_timeout_killable()).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#ifndef DELAY
#define DELAY -1
#endif

__u64 calls, kernel_delay_sum, kernel_delay_max, nr_pages_sum, over_high_id, memcg_id;
__u64 slept_calls, slept_jiffies;

SEC("struct_ops/high_delay")
long BPF_PROG(throttle_high_delay, struct mem_cgroup *memcg, struct mem_cgroup *over_high,
	      unsigned int nr_pages, unsigned long delay)
{
	calls++;
	kernel_delay_sum += delay;
	if (delay > kernel_delay_max)
		kernel_delay_max = delay;
	nr_pages_sum += nr_pages;
	memcg_id = memcg->css.cgroup->kn->id;
	over_high_id = over_high->css.cgroup->kn->id;
	return DELAY;
}

SEC("fentry/schedule_timeout_killable")
int BPF_PROG(throttle_slept, long timeout)
{
	slept_calls++;
	slept_jiffies += timeout;
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops throttle_ops = {
	.high_delay = (void *)throttle_high_delay,
};
