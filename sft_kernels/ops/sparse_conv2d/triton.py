"""Block-sparse implicit-GEMM 2-D convolution in Triton: the K loop visits only the weight blocks that hold a nonzero.

    GEMM M = N·P·Q (output pixels), N = K (output channels), K = C·R·S walked as (tap, BLOCK_K channels) blocks

The launcher lists, for each BLOCK_N slice of output channels, the (tap, channel block) blocks of the weight that
are not all zero (a CSR over N tiles, built once per weight and tile config); each program walks its slice's list,
so its time falls with the blocks kept: a weight pruned in blocks that match (BLOCK_K input × BLOCK_N output
channels at one tap) runs in proportion to them; an unstructured one keeps most blocks until it is very sparse.
Epilogue as sft.conv2d's: bias, relu / leaky_relu, residual; fp32 accumulation (ieee precision for fp32 inputs).
Tile configs in configs/triton.json. Read top to bottom: the kernel, the configs, the block lists, the launcher.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...runtime import checks, weight_pack
from ...runtime import triton as runtime_triton


@triton.jit
def sparse_conv2d_kernel(
    x_ptr, w_ptr, blk_ptr, blk_idx_ptr, bias_ptr, res_ptr, y_ptr,
    N, H, W, P, Q, S, C, K,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    syn, syk, syp, syq,
    srn, srk, srp, srq,
    negative_slope,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    M = N * P * Q
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < K

    # rows: output pixel -> (n, p, q) -> its first input tap
    n_idx = offs_m // (P * Q)
    pq = offs_m % (P * Q)
    ih0 = (pq // Q) * stride_h - pad_h
    iw0 = (pq % Q) * stride_w - pad_w
    row_off = n_idx * sxn + ih0 * sxh + iw0 * sxw

    # tl.full, not tl.zeros (a jit helper): the interpreter trap in runtime/triton.py
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    num_cb = (C + BLOCK_K - 1) // BLOCK_K
    start = tl.load(blk_ptr + pid_n)
    end = tl.load(blk_ptr + pid_n + 1)
    for i in range(start, end):  # only this slice's nonzero (tap, channel block) blocks
        t = tl.load(blk_idx_ptr + i)
        rs = t // num_cb
        c = (t - rs * num_cb) * BLOCK_K + offs_k
        r = rs // S
        s = rs - r * S
        ih = ih0 + r * dil_h
        iw = iw0 + s * dil_w
        row_ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        mask_c = c < C
        a_off = (row_off + r * dil_h * sxh + s * dil_w * sxw)[:, None] + (c * sxc)[None, :]
        a = tl.load(x_ptr + a_off, mask=row_ok[:, None] & mask_c[None, :], other=0.0)
        b_off = (c * swc + r * swr + s * sws)[:, None] + (offs_n * swk)[None, :]
        b = tl.load(w_ptr + b_off, mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(a, b, input_precision="ieee")
        else:
            acc += tl.dot(a, b)

    # epilogue: bias, activation, residual, store in the output's dtype
    y = acc
    if HAS_BIAS:
        y += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if ACTIVATION == 1:
        y = tl.maximum(y, 0.0)
    elif ACTIVATION == 2:
        y = tl.where(y < 0, y * negative_slope, y)
    elif ACTIVATION == 3:  # relu6 (NaN compares false and passes)
        y = tl.where(y < 0, 0.0, tl.where(y > 6.0, 6.0, y))
    elif ACTIVATION == 4:  # silu
        y = y * tl.sigmoid(y)
    elif ACTIVATION == 5:  # hardswish: y·relu6(y + 3) / 6
        y = y * tl.minimum(tl.maximum(y + 3.0, 0.0), 6.0) / 6.0
    elif ACTIVATION == 6:  # gelu: y·Φ(y)
        y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
    elif ACTIVATION == 7:  # gelu, tanh form: y·sigmoid(2u), u = √(2/π)·(y + 0.044715·y³)
        y = y * tl.sigmoid(1.5957691216057308 * (y + 0.044715 * y * y * y))
    p_idx = pq // Q
    q_idx = pq % Q
    out_mask = mask_m[:, None] & mask_n[None, :]
    if HAS_RESIDUAL:
        r_off = (n_idx * srn + p_idx * srp + q_idx * srq)[:, None] + (offs_n * srk)[None, :]
        y += tl.load(res_ptr + r_off, mask=out_mask, other=0.0).to(tl.float32)
    y_off = (n_idx * syn + p_idx * syp + q_idx * syq)[:, None] + (offs_n * syk)[None, :]
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=out_mask)


# ---- tile configs (configs/triton.json: "default" and "interpreter")
INTERPRETED = type(sparse_conv2d_kernel).__name__ == "InterpretedFunction"


def config() -> dict:
    return runtime_triton.tile_config(__file__, sparse_conv2d_kernel)


# ---- block lists: per BLOCK_N slice of output channels, its nonzero (tap, channel block) blocks
def block_lists(w: torch.Tensor, block_n: int, block_k: int) -> torch.Tensor:
    """One int32 tensor: [ptr (K-slices + 1) | block indices t = (r·S + s)·num_cb + cb, ascending per slice]."""
    k, c, r, s = w.shape
    nk, ncb = -(-k // block_n), -(-c // block_k)
    wp = torch.zeros(nk * block_n, ncb * block_k, r, s, dtype=torch.bool, device=w.device)
    wp[:k, :c] = w != 0
    # any nonzero per (slice, channel block, tap) -> [slice][tap][cb]
    nz = wp.view(nk, block_n, ncb, block_k, r, s).any(3).any(1).permute(0, 2, 3, 1).reshape(nk, -1)
    counts = nz.sum(1)
    ptr = torch.zeros(nk + 1, dtype=torch.int32, device=w.device)
    ptr[1:] = counts.cumsum(0)
    idx = nz.nonzero()[:, 1].to(torch.int32)  # row-major: ascending per slice
    return torch.cat([ptr, idx])


def kept_blocks(w: torch.Tensor) -> tuple:
    """(blocks the kernel visits, all blocks) under this process's tile config: its share of the dense work."""
    cfg = config()
    lists = block_lists(w, cfg["BLOCK_N"], cfg["BLOCK_K"])
    nk = -(-w.shape[0] // cfg["BLOCK_N"])
    total = nk * w.shape[2] * w.shape[3] * -(-w.shape[1] // cfg["BLOCK_K"])
    return int(lists.numel() - nk - 1), total


# ---- launcher: check, allocate, launch
def sparse_conv2d(x, w, b, res, stride, padding, dilation, act, slope):
    if not INTERPRETED and x.device.type != "cuda":
        raise ValueError(f"the Triton sparse conv needs a CUDA tensor (or TRITON_INTERPRET=1), got {x.device}")
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    p, q = checks.conv_output_hw(h, wd, r, s, stride, padding, dilation)
    y = torch.empty((n, k, p, q), device=x.device, dtype=x.dtype, memory_format=checks.output_memory_format(x))
    if y.numel() == 0:
        return y
    cfg = config()
    lists = weight_pack.packed(w, f"triton_sparse_{cfg['BLOCK_N']}x{cfg['BLOCK_K']}",
                               lambda w: block_lists(w, cfg["BLOCK_N"], cfg["BLOCK_K"]))
    nk = triton.cdiv(k, cfg["BLOCK_N"])
    res_t = res if res is not None else y
    grid = (triton.cdiv(n * p * q, cfg["BLOCK_M"]), nk)
    sparse_conv2d_kernel[grid](
        x, w, lists, lists[nk + 1:], b if b is not None else w, res_t, y,
        n, h, wd, p, q, s, c, k,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        *x.stride(), *w.stride(), *y.stride(), *res_t.stride(),
        float(slope),
        HAS_BIAS=b is not None, ACTIVATION=checks.ACTIVATIONS.index(act), HAS_RESIDUAL=res is not None,
        IEEE=x.dtype == torch.float32, **cfg)
    return y
