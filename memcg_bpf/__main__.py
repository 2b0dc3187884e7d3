"""python -m memcg_bpf: the memcg-bpf command line."""

from .cli import main

main()
