"""A loaded struct_ops map's kernel value, for handing it to an existing link (BPF_LINK_UPDATE).

libbpf writes a struct_ops map's value when it attaches the map; replacing
the map behind a link pinned by another process needs the same value
without creating a link. It is built here the way libbpf builds it: the
kernel's `bpf_struct_ops_<type>` layout, each member of the policy's struct
found by name, a program's fd where the policy set a program, the bytes the
policy wrote elsewhere.
"""

from __future__ import annotations

import ctypes

from memcg_bpf.bpf import btf as B
from memcg_bpf.bpf.btf import VMLINUX_BTF
from memcg_bpf.errors import MemcgBpfError
from memcg_bpf.bpf.libbpf import Map, Object


def kernel_value(obj: Object, btf: B.Btf, ops: Map) -> bytes:
    """The bytes to write at key 0 of the (loaded, not yet registered) struct_ops map ops; btf: obj's."""
    kernel = B.Btf(VMLINUX_BTF.read_bytes())
    user_type = btf.resolve(ops.btf_value_type_id)
    value_type = kernel.find(f"bpf_struct_ops_{user_type.name}", B.STRUCT)
    kernel_type = kernel.find(user_type.name, B.STRUCT)
    if value_type is None or kernel_type is None:
        raise MemcgBpfError(f"the running kernel has no struct_ops type {user_type.name}")
    data_member = next(m for m in value_type.members if m.name == "data")
    data_off = data_member.bit_offset // 8
    # libbpf keeps the policy's struct with `struct bpf_program *` in the function slots.
    user_data = ctypes.string_at(ops.initial_value_address(), user_type.size_or_type)
    value = bytearray(value_type.size_or_type)
    kernel_members = {m.name: m for m in kernel_type.members}
    for member in user_type.members:
        off = member.bit_offset // 8
        size = btf.size(member.type_id)
        raw = user_data[off:off + size]
        target = kernel_members.get(member.name)
        if target is None:
            if any(raw):
                raise MemcgBpfError(f"the running kernel's struct {user_type.name} has no member {member.name}")
            continue
        at = data_off + target.bit_offset // 8
        if btf.resolve(member.type_id).kind == B.PTR:
            prog = int.from_bytes(raw, "little")
            if prog:
                fd = obj.bpf.lib.bpf_program__fd(prog)
                if fd < 0:
                    raise MemcgBpfError(f"program of {user_type.name}.{member.name} is not loaded")
                value[at:at + 8] = fd.to_bytes(8, "little")
        else:
            value[at:at + size] = raw
    return bytes(value)
