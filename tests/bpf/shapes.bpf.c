// SPDX-License-Identifier: GPL-2.0
/*
 * Maps and globals of the shapes `memcg-bpf stats` decodes: the four per-CPU
 * map types, strings, signed bitfields, enums, bools, tagged fields, knobs
 * next to a bpf_printk format and a static const table.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

typedef __u64 memcg_bpf_cgid_t;

enum shape_mode { SHAPE_OFF, SHAPE_ON };

/* 72 bytes; the test packs it by hand and checks these offsets. */
struct stats_shape {
	memcg_bpf_cgid_t cgroup;	/* 0 */
	__u64 hits;			/* 8 */
	__u64 last_ns;			/* 16: a timestamp by its name */
	__u64 wait_ns __attribute__((btf_decl_tag("memcg_bpf:counter")));	/* 24 */
	__u64 level __attribute__((btf_decl_tag("memcg_bpf:gauge")));	/* 32 */
	enum shape_mode mode;		/* 40 */
	bool seen;			/* 44 */
	char name[8];			/* 45 */
	int small:4;			/* byte 53, bits 0-3 */
	unsigned int flags:4;		/* byte 53, bits 4-7 */
	__u64 hist[2];			/* 56 */
};

#define SHAPE_MAP(map_type, key_type, entries, name)	\
struct {						\
	__uint(type, map_type);				\
	__uint(max_entries, entries);			\
	__type(key, key_type);				\
	__type(value, struct stats_shape);		\
} name SEC(".maps")

SHAPE_MAP(BPF_MAP_TYPE_HASH, __u32, 4, plain);
SHAPE_MAP(BPF_MAP_TYPE_PERCPU_HASH, __u32, 4, percpu_hash);
SHAPE_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, __u32, 1, percpu_array);
SHAPE_MAP(BPF_MAP_TYPE_LRU_PERCPU_HASH, __u32, 4, lru_percpu_hash);
SHAPE_MAP(BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, struct bpf_cgroup_storage_key, 0, cg_storage);

const volatile __u32 k_pages = 7;		/* knobs */
const volatile char k_name[8] = "abc";
static const __u32 table[2] = { 3, 4 };		/* read-only data, not a knob */
__u64 events;					/* .bss */

SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
	struct stats_shape *s = bpf_get_local_storage(&cg_storage, 0);

	if (s)
		s->hits += table[skb->len & 1] + k_pages + k_name[0];
	__sync_fetch_and_add(&events, 1);
	bpf_printk("egress %u", skb->len);
	return 1;
}
