"""Fused depthwise -> pointwise conv in Triton: the depthwise outputs of a tile never leave registers.

    GEMM M = N·P·Q (output pixels), N = K (output channels), K = C·m (depthwise outputs, "mid" channels)

Each program owns BLOCK_M output pixels × BLOCK_N output channels. For every block of BLOCK_K mid channels it
computes their depthwise outputs at its pixels (R·S taps, each a [BLOCK_M, BLOCK_K] load of the input channels
those mid channels read, times the tap's weights), adds the depthwise bias and the mid activation, and feeds that
tile straight to `tl.dot` with the pointwise weights' [BLOCK_K, BLOCK_N] slice. When K > BLOCK_N the depthwise
work is repeated per output-channel slice (R·S of the C·m·K multiply-adds: small), which keeps programs
independent. Epilogue as sft.conv2d's: bias, relu / leaky_relu, residual; fp32 accumulation (ieee for fp32).
Tile configs in configs/triton.json. Read top to bottom: the kernel, the configs, the launcher.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...runtime import checks
from ...runtime import triton as runtime_triton


@triton.jit
def separable_conv2d_kernel(
    x_ptr, dw_ptr, dwb_ptr, pw_ptr, pwb_ptr, res_ptr, y_ptr,
    N, H, W, P, Q, CM, K, MULT,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,
    syn, syk, syp, syq,
    srn, srk, srp, srq,
    negative_slope,
    R: tl.constexpr, S: tl.constexpr,
    HAS_DW_BIAS: tl.constexpr, MID_ACTIVATION: tl.constexpr,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr, IEEE: tl.constexpr,
    SHUFFLE: tl.constexpr,
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
    p_idx = pq // Q
    q_idx = pq % Q
    ih0 = p_idx * stride_h - pad_h
    iw0 = q_idx * stride_w - pad_w
    row_off = n_idx * sxn + ih0 * sxh + iw0 * sxw

    # tl.full, not tl.zeros (a jit helper): the interpreter trap in runtime/triton.py
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    for k0 in range(0, CM, BLOCK_K):
        cm = k0 + offs_k  # mid channels of this block; mid channel cm reads input channel cm // MULT
        mask_k = cm < CM
        a_col = (cm // MULT) * sxc
        # depthwise outputs of the block at this tile's pixels: R·S taps, accumulated in fp32 registers
        d = tl.full((BLOCK_M, BLOCK_K), 0.0, dtype=tl.float32)
        for r in tl.static_range(R):
            ih = ih0 + r * dil_h
            h_ok = mask_m & (ih >= 0) & (ih < H)
            for s in tl.static_range(S):
                iw = iw0 + s * dil_w
                ok = h_ok & (iw >= 0) & (iw < W)
                a = tl.load(x_ptr + (row_off + r * dil_h * sxh + s * dil_w * sxw)[:, None] + a_col[None, :],
                            mask=ok[:, None] & mask_k[None, :], other=0.0)
                wt = tl.load(dw_ptr + cm * (R * S) + r * S + s, mask=mask_k, other=0.0)
                d += a.to(tl.float32) * wt.to(tl.float32)[None, :]
        if HAS_DW_BIAS:
            d += tl.load(dwb_ptr + cm, mask=mask_k, other=0.0).to(tl.float32)[None, :]
        if MID_ACTIVATION == 1:
            d = tl.maximum(d, 0.0)
        elif MID_ACTIVATION == 2:
            d = tl.where(d < 0, d * negative_slope, d)
        elif MID_ACTIVATION == 3:  # relu6 (NaN compares false and passes)
            d = tl.where(d < 0, 0.0, tl.where(d > 6.0, 6.0, d))
        elif MID_ACTIVATION == 4:  # silu
            d = d * tl.sigmoid(d)
        elif MID_ACTIVATION == 5:  # hardswish: y·relu6(y + 3) / 6
            d = d * tl.minimum(tl.maximum(d + 3.0, 0.0), 6.0) / 6.0
        elif MID_ACTIVATION == 6:  # gelu: d·Φ(d)
            d = 0.5 * d * (1.0 + tl.erf(d * 0.7071067811865476))
        elif MID_ACTIVATION == 7:  # gelu, tanh form: d·sigmoid(2u), u = √(2/π)·(d + 0.044715·d³)
            d = d * tl.sigmoid(1.5957691216057308 * (d + 0.044715 * d * d * d))
        # pointwise: [BLOCK_M, BLOCK_K] x [BLOCK_K, BLOCK_N], the weight read as pw[n, cm] (contiguous K x CM)
        b = tl.load(pw_ptr + offs_n[None, :] * CM + cm[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if IEEE:  # fp32 operands, or the interpreter (its dot misreads a tile cast to bf16 inside the kernel)
            acc += tl.dot(d, b.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(d.to(b.dtype), b)

    # epilogue: bias, activation, residual, store in the output's dtype
    y = acc
    if HAS_BIAS:
        y += tl.load(pwb_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
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
    out_mask = mask_m[:, None] & mask_n[None, :]
    # PixelShuffle(SHUFFLE): output channel k = c·r² + i·r + j goes to channel c at (p·r + i, q·r + j); the
    # residual is shaped like the shuffled output and read there
    oc = offs_n // (SHUFFLE * SHUFFLE)
    oi = (offs_n // SHUFFLE) % SHUFFLE
    oj = offs_n % SHUFFLE
    row = p_idx[:, None] * SHUFFLE + oi[None, :]
    col = q_idx[:, None] * SHUFFLE + oj[None, :]
    if HAS_RESIDUAL:
        r_off = n_idx[:, None] * srn + oc[None, :] * srk + row * srp + col * srq
        y += tl.load(res_ptr + r_off, mask=out_mask, other=0.0).to(tl.float32)
    y_off = n_idx[:, None] * syn + oc[None, :] * syk + row * syp + col * syq
    tl.store(y_ptr + y_off, y.to(y_ptr.dtype.element_ty), mask=out_mask)


# ---- tile configs (configs/triton.json: "default" and "interpreter")
INTERPRETED = type(separable_conv2d_kernel).__name__ == "InterpretedFunction"


def config() -> dict:
    return runtime_triton.tile_config(__file__, separable_conv2d_kernel)


# ---- launcher: check, allocate, launch
def separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1):
    """shuffle = r > 1: PixelShuffle(r) of the result, written from the epilogue, then the residual (shaped like
    the shuffled output)."""
    if not INTERPRETED and x.device.type != "cuda":
        raise ValueError(f"the Triton separable conv needs a CUDA tensor (or TRITON_INTERPRET=1), got {x.device}")
    n, c, h, wd = x.shape
    cm, _, r, s = dw.shape
    k = pw.shape[0]
    p, q = checks.conv_output_hw(h, wd, r, s, stride, padding, dilation)
    y = torch.empty((n, k // (shuffle * shuffle), p * shuffle, q * shuffle), device=x.device, dtype=x.dtype,
                    memory_format=checks.output_memory_format(x))
    if y.numel() == 0:
        return y
    cfg = config()
    dw, pw = dw.contiguous(), pw.contiguous()  # the kernel indexes them as CM x R·S and K x CM
    res_t = res if res is not None else y
    grid = (triton.cdiv(n * p * q, cfg["BLOCK_M"]), triton.cdiv(k, cfg["BLOCK_N"]))
    separable_conv2d_kernel[grid](
        x, dw, dwb if dwb is not None else dw, pw, pwb if pwb is not None else pw, res_t, y,
        n, h, wd, p, q, cm, k, cm // c,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        *x.stride(), *y.stride(), *res_t.stride(),
        float(slope),
        R=r, S=s, HAS_DW_BIAS=dwb is not None, MID_ACTIVATION=checks.ACTIVATIONS.index(mid_act),
        HAS_BIAS=pwb is not None, ACTIVATION=checks.ACTIVATIONS.index(act), HAS_RESIDUAL=res is not None,
        IEEE=x.dtype == torch.float32 or INTERPRETED, SHUFFLE=shuffle, **cfg)
    return y
