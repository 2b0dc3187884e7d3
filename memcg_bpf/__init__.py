"""memcg-bpf: memory-cgroup policies in BPF through the memcg_ops struct_ops."""

__version__ = "0.1.0"
