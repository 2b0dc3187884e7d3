"""python -m memcg_bpf: the memcg-bpf command line."""

from memcg_bpf.cli import main

main()
