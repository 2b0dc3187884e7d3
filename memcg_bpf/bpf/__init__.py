"""Generic BPF plumbing: libbpf, BPF syscalls, BTF; knows nothing about memory cgroups."""
