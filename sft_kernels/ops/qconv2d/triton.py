"""int8 implicit-GEMM 2-D convolution in Triton: uint8 activations × int8 weights, int32 sums from tl.dot, and the
requantization fused into the store (the cpu kernel's epilogue).

    GEMM M = N·P·Q (output pixels), N = K (output channels), K = C·R·S walked tap by tap, BLOCK_K channels a step

tl.dot multiplies int8 by int8, so the uint8 input is shifted by 128 as it is loaded (x − 128 fits int8; padding
and the tile's overhang load the zero point zx, as the cpu kernel's padded copy holds it), and the store adds back
what the shift took: Σ (x − zx)·w = Σ (x − 128)·w + (128 − zx)·Σw, with Σw per output channel from the launcher.

    y = (acc + (128 − zx)·wsum[k]) · x_scale·w_scale[k] + bias[k] → relu | leaky_relu → + residual
    out = y (float32, or bfloat16), or clamp(round(y / out_scale) + out_zero_point, 0, 255) (uint8; int8: clamped
    to [-128, 127]); a uint8 residual is added as (r − res_zp)·res_scale

Exact under the interpreter (integer sums); tile configs in configs/triton.json. Read top to bottom: the kernel, the
configs, the launcher.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...runtime import checks, weight_pack
from ...runtime import triton as runtime_triton


@triton.jit
def qconv2d_kernel(
    x_ptr, w_ptr, wsum_ptr, mult_ptr, bias_ptr, res_ptr, y_ptr,
    N, H, W, P, Q, R, S, C, K,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    syn, syk, syp, syq,
    srn, srk, srp, srq,
    x_zp, negative_slope, inv_out, out_zp, res_scale, res_zp,
    HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr, HAS_RESIDUAL: tl.constexpr, QUANT_OUT: tl.constexpr,
    SIGNED_OUT: tl.constexpr, BF16_OUT: tl.constexpr, RES_U8: tl.constexpr, SHUFFLE: tl.constexpr,
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

    acc = tl.full((BLOCK_M, BLOCK_N), 0, dtype=tl.int32)
    num_cb = (C + BLOCK_K - 1) // BLOCK_K
    for t in range(0, R * S * num_cb):
        rs = t // num_cb
        c = (t - rs * num_cb) * BLOCK_K + offs_k
        r = rs // S
        s = rs - r * S
        ih = ih0 + r * dil_h
        iw = iw0 + s * dil_w
        row_ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        mask_c = c < C
        # A [BLOCK_M, BLOCK_K]: uint8 taps (the zero point where the filter hangs over the edge), shifted to int8
        a_off = (row_off + r * dil_h * sxh + s * dil_w * sxw)[:, None] + (c * sxc)[None, :]
        a = tl.load(x_ptr + a_off, mask=row_ok[:, None] & mask_c[None, :], other=0).to(tl.int32)
        a = tl.where(row_ok[:, None], a, x_zp)  # padding reads the zero point (channel tails meet zero weights)
        a = (a - 128).to(tl.int8)
        # B [BLOCK_K, BLOCK_N]: int8 weights, zero past the channels
        b_off = (c * swc + r * swr + s * sws)[:, None] + (offs_n * swk)[None, :]
        b = tl.load(w_ptr + b_off, mask=mask_c[:, None] & mask_n[None, :], other=0)
        acc += tl.dot(a, b, out_dtype=tl.int32)

    # epilogue: take back the shift, scale, bias, activation, residual, store float or requantized uint8
    wsum = tl.load(wsum_ptr + offs_n, mask=mask_n, other=0)
    mult = tl.load(mult_ptr + offs_n, mask=mask_n, other=0.0)
    acc = acc + ((128 - x_zp) * wsum)[None, :]
    y = acc.to(tl.float32) * mult[None, :]
    if HAS_BIAS:
        y += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
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
        if RES_U8:
            rq = tl.load(res_ptr + r_off, mask=out_mask, other=0).to(tl.int32)
            y += (rq - res_zp).to(tl.float32) * res_scale
        else:
            y += tl.load(res_ptr + r_off, mask=out_mask, other=0.0)
    # PixelShuffle(SHUFFLE) in the store: channel k = c·r² + i·r + j goes to channel c at (p·r + i, q·r + j) (the
    # residual, shaped like the conv's own output, was added above)
    row = p_idx[:, None] * SHUFFLE + ((offs_n // SHUFFLE) % SHUFFLE)[None, :]
    col = q_idx[:, None] * SHUFFLE + (offs_n % SHUFFLE)[None, :]
    y_off = n_idx[:, None] * syn + (offs_n // (SHUFFLE * SHUFFLE))[None, :] * syk + row * syp + col * syq
    if QUANT_OUT:
        q = y * inv_out
        q = tl.where(q >= 0, tl.floor(q + 0.5), tl.ceil(q - 0.5))  # round half away (ties: within one step)
        if SIGNED_OUT:
            q = tl.minimum(tl.maximum(q + out_zp, -128.0), 127.0)
            tl.store(y_ptr + y_off, q.to(tl.int8), mask=out_mask)
        else:
            q = tl.minimum(tl.maximum(q + out_zp, 0.0), 255.0)
            tl.store(y_ptr + y_off, q.to(tl.uint8), mask=out_mask)
    elif BF16_OUT:  # round to nearest even in integers: the interpreter's float cast truncates
        u = y.to(tl.uint32, bitcast=True)
        h = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        h = tl.where(y != y, 0x7FC0, h)  # NaN stays a quiet NaN
        tl.store(y_ptr + y_off, h.to(tl.uint16).to(tl.bfloat16, bitcast=True), mask=out_mask)
    else:
        tl.store(y_ptr + y_off, y, mask=out_mask)


# ---- tile configs (configs/triton.json: "default" and "interpreter"; the interpreter runs small tiles faster)
INTERPRETED = type(qconv2d_kernel).__name__ == "InterpretedFunction"


def config() -> dict:
    return runtime_triton.tile_config(__file__, qconv2d_kernel)


# ---- launcher: check, allocate, launch
def _weight_sums(w):
    """Σ w per output channel (int32), which carries the input's shift: computed once per weight tensor."""
    return w.to(torch.int32).sum((1, 2, 3)).to(torch.int32)


def qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, act, slope, o_scale, o_zp, o_dtype=None,
            r_scale=0.0, r_zp=0, shuffle=1):
    if not INTERPRETED and x.device.type != "cuda":
        raise ValueError(f"the Triton int8 conv needs a CUDA tensor (or TRITON_INTERPRET=1), got {x.device}")
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    p, q = checks.conv_output_hw(h, wd, r, s, stride, padding, dilation)
    quant = o_scale > 0
    y = torch.empty((n, k // (shuffle * shuffle), p * shuffle, q * shuffle), device=x.device,
                    dtype=o_dtype or (torch.uint8 if quant else torch.float32),
                    memory_format=checks.output_memory_format(x))
    if y.numel() == 0:
        return y
    wsum = weight_pack.packed(w, "triton_qconv2d_wsum", _weight_sums)
    mult = (ws.double() * x_scale).float()
    cfg = config()
    res_t = res if res is not None else y
    grid = (triton.cdiv(n * p * q, cfg["BLOCK_M"]), triton.cdiv(k, cfg["BLOCK_N"]))
    qconv2d_kernel[grid](
        x, w, wsum, mult, b if b is not None else mult, res_t, y,
        n, h, wd, p, q, r, s, c, k,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        *x.stride(), *w.stride(), *y.stride(), *res_t.stride(),
        x_zp, float(slope), (1.0 / o_scale) if quant else 0.0, float(o_zp), float(r_scale), int(r_zp),
        HAS_BIAS=b is not None, ACTIVATION=checks.ACTIVATIONS.index(act), HAS_RESIDUAL=res is not None,
        QUANT_OUT=quant, SIGNED_OUT=o_dtype == torch.int8, BF16_OUT=o_dtype == torch.bfloat16,
        RES_U8=r_scale > 0, SHUFFLE=shuffle, **cfg)
    return y
