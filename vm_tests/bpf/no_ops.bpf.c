// SPDX-License-Identifier: GPL-2.0
/* A valid BPF object without a memcg_ops map, for the loader's error path. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_write")
int count_writes(void *ctx)
{
	return 0;
}
