// SPDX-License-Identifier: GPL-2.0
/*
 * Test program the verifier must reject: a store to FIELD of the context
 * (-DFIELD=gfp_mask, ...) or, with -DTHROUGH_MEMCG, a store through the
 * memcg pointer at the same offset as nr_pages in the context, or, with
 * -DPARTIAL_STORE, a 4-byte store into nr_pages. -DLONG_LOG puts a few
 * hundred instructions before the bad store, so that the verifier log runs
 * to many kilobytes and the reason is at its very end.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("struct_ops/try_charge_memcg")
int BPF_PROG(bad_write, struct try_charge_memcg *tcm)
{
#ifdef LONG_LOG
	volatile __u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 200; i++)
		sum += tcm->nr_pages * i;
#endif
#if defined(THROUGH_MEMCG)
	tcm->memcg->css.ss = 0;
#elif defined(PARTIAL_STORE)
	*(volatile __u32 *)&tcm->nr_pages = 1;
#else
	tcm->FIELD = 0;
#endif
	return 0;
}

SEC(".struct_ops.link")
struct memcg_ops bad_write_ops = {
	.try_charge_memcg = (void *)bad_write,
};
