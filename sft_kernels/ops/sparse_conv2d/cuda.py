"""The `cuda` backend of sft.sparse_conv2d: the tensor-core implicit-GEMM conv (csrc/cuda/conv2d/conv2d.cu) with
block lists, so each thread block walks only the K tiles of its N tile that hold a nonzero weight.

A block is BN output channels × BK reduction steps of the KRSC weight (BK consecutive channels of one filter tap
when Cg is a multiple of BK) under the launch's tile config, so weights pruned in such blocks run in proportion to
the blocks kept; unstructured ones keep most blocks until they are very sparse. The lists are built once per weight
and config (weight_pack). Layouts, padding and the epilogue are sft.conv2d's cuda backend's (ops/conv2d/cuda.py).
"""
from __future__ import annotations

import torch

from ...runtime import checks, weight_pack
from ..conv2d import cuda as dense


def block_lists(wh: torch.Tensor, groups: int, bn: int, bk: int) -> torch.Tensor:
    """[ptr (groups × N tiles + 1) | K-tile indices] (int32, on wh's device) for a KRSC weight: per group and N
    tile of bn output channels, the K tiles of bk reduction steps with a nonzero, ascending."""
    k = wh.shape[0]
    kg, depth = k // groups, wh[0].numel()
    ntn, nkt = -(-kg // bn), -(-depth // bk)
    nz = torch.zeros(groups, ntn * bn, nkt * bk, dtype=torch.bool, device=wh.device)
    nz[:, :kg, :depth] = (wh.reshape(groups, kg, depth) != 0)
    keep = nz.view(groups, ntn, bn, nkt, bk).any(4).any(2).reshape(groups * ntn, nkt)
    ptr = torch.zeros(groups * ntn + 1, dtype=torch.int32, device=wh.device)
    ptr[1:] = keep.sum(1).cumsum(0)
    idx = keep.nonzero()[:, 1].to(torch.int32)
    return torch.cat([ptr, idx])


def sparse_conv2d(x, w, b, res, stride, padding, dilation, groups, act, slope, kernel=None, tile=None):
    """`kernel` and `tile` = (config index, BN, BK) stand in for the extension in tests (no GPU)."""
    kernel = kernel or dense._kernel()
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    cg8 = -(-cg // 8) * 8
    xh = dense._pad_groups(x.permute(0, 2, 3, 1), groups, cg, cg8)
    wh = dense._pack_weight(w, groups, cg8)
    p, q = checks.conv_output_hw(h, wd, kh, kw, stride, padding, dilation)
    if tile is not None:
        config, bn, bk = tile
    else:
        config = dense._config_index(n, p, q, k, groups)
        if config < 0:  # the lists are per config: ask the kernel's heuristic which one it would run
            config = int(torch.ops.sft_cuda.choose_tile_config(n, p, q, k, groups))
        _, (_, bn, bk, *_) = dense.tile_configs()[config]
    lists = weight_pack.packed(w, f"cuda_sparse_{cg8}_{groups}_{config}",
                               lambda w: block_lists(dense._pack_weight(w, groups, cg8), groups, bn, bk))
    ntn = -(-(k // groups) // bn)
    ptr, idx = lists[:groups * ntn + 1], lists[groups * ntn + 1:]
    resh = None if res is None else res.permute(0, 2, 3, 1).contiguous()
    y = kernel(xh, wh, b if b is None else b.contiguous(), list(stride), list(padding), list(dilation), groups,
               checks.ACTIVATIONS.index(act), float(slope), resh, 1, config, ptr, idx)
    return y.permute(0, 3, 1, 2).contiguous(memory_format=checks.output_memory_format(x))
