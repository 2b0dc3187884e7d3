// SPDX-License-Identifier: GPL-2.0
/*
 * noop: the cheapest memcg_ops handler. Returns 0 and touches nothing.
 *
 * Knobs: none.
 * Cost: one direct and one indirect call per charge that misses the
 * per-cpu stock; the floor for measuring the hook's overhead.
 */
#include "memcg_bpf.h"

char LICENSE[] SEC("license") = "GPL";

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(noop_try_charge, struct try_charge_memcg *tcm)
{
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops noop_ops = {
	.try_charge_memcg = (void *)noop_try_charge,
};
