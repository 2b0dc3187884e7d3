// SPDX-License-Identifier: GPL-2.0
/* Test program the verifier must reject: a sleepable memcg_ops handler. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("struct_ops.s/try_charge_memcg")
int BPF_PROG(sleepy, struct try_charge_memcg *tcm)
{
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops sleepy_ops = {
	.try_charge_memcg = (void *)sleepy,
};
