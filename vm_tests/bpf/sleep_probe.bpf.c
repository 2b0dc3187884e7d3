// SPDX-License-Identifier: GPL-2.0
/*
 * Test program, independent of any policy: the memory.high throttle sleeps
 * (schedule_timeout_killable() calls) per cgroup of the sleeping task.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct sleeps {
	__u64 calls;
	__u64 jiffies;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, struct sleeps);
} slept SEC(".maps");

SEC("fentry/schedule_timeout_killable")
int BPF_PROG(probe_sleep, long timeout)
{
	__u64 cgroup = bpf_get_current_cgroup_id();
	struct sleeps zero = {}, *s;

	bpf_map_update_elem(&slept, &cgroup, &zero, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&slept, &cgroup);
	if (s) {
		__sync_fetch_and_add(&s->calls, 1);
		__sync_fetch_and_add(&s->jiffies, timeout);
	}
	return 0;
}
