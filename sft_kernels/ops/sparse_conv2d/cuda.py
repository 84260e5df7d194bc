"""The `cuda` backend of sft.sparse_conv2d, two kernels:

- 2:4 weights (every aligned run of 4 reduction steps holds at most 2 nonzeros; `prune_` with pattern "n:m", n=2,
  m=4 makes them): the sparse tensor-core kernel (csrc/cuda/sparse_conv2d/sparse24.cu, mma.sp m16n8k32), which
  reads half the weight bytes and does each two dense mma's work in one. The values and metadata are packed once
  per weight (pack24.py). SFT_KERNELS_CUDA_SPARSE24=0 sends such weights to the block lists instead.
- any other pattern: the tensor-core implicit-GEMM conv (csrc/cuda/conv2d/conv2d.cu) with block lists, so each
  thread block walks only the K tiles of its N tile that hold a nonzero weight.

A block is BN output channels × BK reduction steps of the KRSC weight (BK consecutive channels of one filter tap
when Cg is a multiple of BK) under the launch's tile config, so weights pruned in such blocks run in proportion to
the blocks kept; unstructured ones keep most blocks until they are very sparse. The lists are built once per weight
and config (weight_pack). Layouts, padding and the epilogue are sft.conv2d's cuda backend's (ops/conv2d/cuda.py).
"""
from __future__ import annotations

import os

import torch

from ...runtime import checks, weight_pack
from ..conv2d import cuda as dense
from ..conv2d.reference import epilogue
from .pack24 import pack24


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


def _packed24(w, groups, config, bm, bk):
    """(values, metadata) for this config, or None for a weight that is not 2:4; cached on the weight."""
    def build(w):
        packed = pack24(w, groups, bm, bk)
        if packed is None:
            return torch.empty(0, dtype=torch.uint8, device=w.device)
        return torch.cat([packed[0].reshape(-1).view(torch.uint8), packed[1].view(torch.uint8)])

    both = weight_pack.packed(w, f"cuda_sparse24_{groups}_{config}", build)
    if both.numel() == 0:
        return None
    k, cg, r, s = w.shape
    a_ld = -(-(r * s * (-(-cg // 8) * 8)) // bk) * bk // 2
    n_values = k * a_ld * w.element_size()
    return both[:n_values].view(w.dtype).view(k, a_ld), both[n_values:].view(torch.int32)


def _sparse24(xh, w, b, resh, stride, padding, dilation, groups, act, slope, kernel24, tile24, shape):
    """The 2:4 kernel's output (NHWC), or None when `w` is not 2:4 (or the path is switched off)."""
    if os.environ.get("SFT_KERNELS_CUDA_SPARSE24", "1") == "0":
        return None
    if tile24 is not None:
        config, bm, bk = tile24
    else:
        n, p, q = shape
        config = int(torch.ops.sft_cuda.sparse24_choose_tile_config(n, p, q, w.shape[0], groups))
        _, (bm, _, bk, *_) = dense.tile_configs("sparse24")[config]
    packed = _packed24(w, groups, config, bm, bk)
    if packed is None:
        return None
    kernel24 = kernel24 or torch.ops.sft_cuda.sparse24_conv2d_nhwc
    # The 2:4 epilogue is one select and one min (relu-likes; a branch there sent its accumulators to local
    # memory): silu, hardswish and gelu, and the residual after them, follow the kernel.
    post = act in ("silu", "hardswish", "gelu", "gelu_tanh")
    y = kernel24(xh, packed[0], packed[1], b if b is None else b.contiguous(), None if post else resh, list(stride),
                 list(padding), list(dilation), groups, w.shape[2], w.shape[3],
                 0 if post else checks.ACTIVATIONS.index(act), float(slope), config)
    return epilogue(y, act, slope, resh) if post else y


def sparse_conv2d(x, w, b, res, stride, padding, dilation, groups, act, slope, kernel=None, tile=None, kernel24=None,
                  tile24=None):
    """`kernel` / `kernel24` and `tile` / `tile24` = (config index, BN, BK) / (config index, BM, BK) stand in for the
    extension's two kernels in tests (no GPU); a test that passes only `kernel` runs the block lists."""
    try_24 = kernel24 is not None or kernel is None
    if kernel24 is None and kernel is None:
        dense._kernel()  # raises with the reason when the cuda backend cannot run
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    cg8 = -(-cg // 8) * 8
    xh = dense._pad_groups(x.permute(0, 2, 3, 1), groups, cg, cg8)
    p, q = checks.conv_output_hw(h, wd, kh, kw, stride, padding, dilation)
    resh = None if res is None else res.permute(0, 2, 3, 1).contiguous()
    y = None
    if try_24:
        y = _sparse24(xh, w, b, resh, stride, padding, dilation, groups, act, slope, kernel24, tile24, (n, p, q))
    if y is None:
        y = _block_sparse(xh, w, b, resh, stride, padding, dilation, groups, act, slope, kernel, tile, (n, p, q))
    return y.permute(0, 3, 1, 2).contiguous(memory_format=checks.output_memory_format(x))


def _block_sparse(xh, w, b, resh, stride, padding, dilation, groups, act, slope, kernel, tile, shape):
    """The dense tensor-core kernel with block lists (NHWC output)."""
    kernel = kernel or dense._kernel()
    k, cg, _, _ = w.shape
    cg8 = -(-cg // 8) * 8
    wh = dense._pack_weight(w, groups, cg8)
    if tile is not None:
        config, bn, bk = tile
    else:
        n, p, q = shape
        config = dense._config_index(n, p, q, k, groups)
        if config < 0:  # the lists are per config: ask the kernel's heuristic which one it would run
            config = int(torch.ops.sft_cuda.choose_tile_config(n, p, q, k, groups))
        _, (_, bn, bk, *_) = dense.tile_configs()[config]
    lists = weight_pack.packed(w, f"cuda_sparse_{cg8}_{groups}_{config}",
                               lambda w: block_lists(dense._pack_weight(w, groups, cg8), groups, bn, bk))
    ntn = -(-(k // groups) // bn)
    ptr, idx = lists[:groups * ntn + 1], lists[groups * ntn + 1:]
    return kernel(xh, wh, b if b is None else b.contiguous(), list(stride), list(padding), list(dilation), groups,
                  checks.ACTIVATIONS.index(act), float(slope), resh, 1, config, ptr, idx)
