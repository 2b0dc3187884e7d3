"""vmlinux.h generation through libbpf's btf_dump, on BTF no cache has seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from memcg_bpf.bpf.libbpf import Libbpf
from memcg_bpf.bpf.vmlinux_h import dump_c

HOST_BTF = Path("/sys/kernel/btf/vmlinux")


def test_dump_c_prints_every_type_of_the_host_kernel(libbpf: Libbpf) -> None:
    # The printer callback formats through vsnprintf with a va_list pointer;
    # without argtypes ctypes truncated it to 32 bits and this crashed.
    if not HOST_BTF.exists():
        pytest.skip("the host kernel has no BTF")
    text = dump_c(libbpf, HOST_BTF)
    assert text.startswith("#ifndef __VMLINUX_H__")
    assert "struct task_struct {" in text
    assert text.rstrip().endswith("#endif /* __VMLINUX_H__ */")
