"""The `cpu` backend of sft.sparse_conv2d: the extension's sparse direct conv (csrc/cpu/sparse_conv2d/). The
weight's nonzeros are packed once per weight tensor (with their tap codes, in blocks of 1 or 4 output channels)
and held as long as the weight lives (runtime.weight_pack); `kernel()` says which ISA's tile kernels run."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...runtime import checks, registry, weight_pack

BLOCKS = {None: 0, 1: 1, 4: 4}  # the public `block` argument -> the packer's code (0: decide from the weight)


def kernel(want: str = "") -> str:
    """"avx512", "avx2" or "generic": the tile kernels this process runs; `want` switches (tests)."""
    registry.cpu_ext()
    return torch.ops.sft_cpu.sparse_conv2d_kernel(want)


def pack(w: torch.Tensor, groups: int, block, shuffle: int = 1) -> torch.Tensor:
    """The packed weight the kernel reads (output channels in sub-pixel order for shuffle > 1: weight_pack.sub_pixel),
    cached while `w` is unchanged."""
    registry.cpu_ext()
    code = BLOCKS[block]
    if shuffle > 1:
        w = weight_pack.sub_pixel(w, w.shape[0], shuffle, f"cpu_sparse_sub{shuffle}")
    return weight_pack.packed(w, f"cpu_sparse_g{groups}_b{code}",
                              lambda w: torch.ops.sft_cpu.sparse_conv2d_pack(w.detach(), groups, code))


def info(w: torch.Tensor, groups: int = 1, block=None) -> dict:
    """What the packer made of `w`: nonzeros, the blocks holding them, the block size, and for unstructured 3×3
    weights the tap groups the tile kernels run (nonzeros of one filter in one (channel, column), 0 otherwise)."""
    nnz, nnzb, kb, tap_groups = torch.ops.sft_cpu.sparse_conv2d_info(pack(w, groups, block))
    return {"nonzeros": nnz, "blocks": nnzb, "block": kb, "tap_groups": tap_groups}


def sparse_conv2d(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, shuffle=1):
    if shuffle > 1 and groups > 1:
        # Reordering a grouped weight's output channels would move them across groups (the packer takes a
        # channel's group from its index): shuffle after the kernel instead.
        y = sparse_conv2d(x, w, b, None, ms, mt, stride, padding, dilation, groups, act, slope, block)
        y = F.pixel_shuffle(y, shuffle).contiguous(memory_format=checks.output_memory_format(x))
        return y if res is None else y + res
    packed = pack(w, groups, block, shuffle)
    if shuffle > 1:
        b = weight_pack.sub_pixel(b, w.shape[0], shuffle, f"cpu_sparse_sub{shuffle}")
    return torch.ops.sft_cpu.sparse_conv2d.default(x, packed, b, w.shape[2], w.shape[3], stride, padding, dilation,
                                                   checks.ACTIVATIONS.index(act), slope, res, ms, mt, shuffle)
