"""Configure and build the memcg_ops test kernel and its BPF tools."""
