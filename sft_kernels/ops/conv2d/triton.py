"""Implicit-GEMM 2-D convolution in Triton, with a fused bias / activation / residual epilogue.

The convolution  y[n, k, p, q] = sum_{c, r, s} x[n, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]
                                               * w[k, c, r, s]          (g = k // Kg)
is a GEMM without materialising im2col (the CUTLASS "implicit GEMM" mapping), per group g:

    GEMM M = N*P*Q        rows: output pixels (n, p, q)
    GEMM N = Kg = K/groups columns: output channels of the group
    GEMM K = Cg*R*S       reduction, walked tap by tap (r, s), BLOCK_K channels c at a time (c is
                          contiguous in NHWC, so A tiles load as wide vectors)

Each program computes one BLOCK_M x BLOCK_N tile of the output of one group, walking the
reduction in BLOCK_K steps; the A tile is gathered from the input (zero where the filter hangs
over the padding or the tile over the edge), the B tile from the weight. All addresses come
from the tensors' real strides, so NCHW, channels_last (NHWC: the compute layout, c innermost)
and non-contiguous views run without a copy. Accumulation is fp32; then the epilogue

    y = acc + bias[k];  y = relu(y) | leaky_relu(y, slope);  y = y + residual;  store y

Read top to bottom: the kernel, the tile configs, the launcher.
"""
from __future__ import annotations

import dataclasses
import os
import json
import sys
from typing import Optional, Sequence, Union

import torch
import triton
import triton.language as tl

from ...runtime import checks

__all__ = ["conv2d", "conv2d_kernel", "TileConfig", "CONFIGS", "choose_config", "INTERPRETED"]


@triton.jit
def conv2d_kernel(
    # pointers (bias_ptr / res_ptr point at the output when unused: never dereferenced then)
    x_ptr, w_ptr, bias_ptr, res_ptr, y_ptr,
    scale_ptr, shift_ptr,  # SFT input modulation x·(scale+1)+shift; strided like x (point at x when unused)
    # sizes: batch, input H/W, output P/Q, filter R/S, channels per group in/out
    N, H, W, P, Q, R, S, Cg, Kg,
    # convolution parameters
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    # element strides: input (n, c, h, w), weight (k, c, r, s), output and residual (n, k, p, q), bias
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    syn, syk, syp, syq,
    srn, srk, srp, srq,
    sb,
    negative_slope,
    HAS_BIAS: tl.constexpr,
    ACTIVATION: tl.constexpr,  # 0 none, 1 relu, 2 leaky_relu, 3 relu6
    HAS_RESIDUAL: tl.constexpr,
    HAS_MODULATION: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,  # "ieee" | "tf32" | "tf32x3": only matters for fp32 operands
    UPCAST: tl.constexpr,  # cast A/B tiles to fp32 before tl.dot (bf16 under the interpreter)
    INT64: tl.constexpr,  # some tensor spans >= 2**31 elements: 64-bit address arithmetic
    EVEN_C: tl.constexpr,  # Cg % BLOCK_K == 0: no channel-tail masks
    SHUFFLE: tl.constexpr,  # r > 1: store PixelShuffle(r) of the activated conv (y, residual: N, K/r², P·r, Q·r)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    M = N * P * Q

    # ---- which tile: axis 0 walks (M tiles x N tiles) in grouped order, axis 1 is the conv group.
    # GROUP_M row-tiles share each column of weight tiles, so consecutive programs reuse the same
    # input rows and weight columns from L2 (as in the Triton matmul tutorial).
    pid = tl.program_id(0)
    g = tl.program_id(1)
    # Builtins only (no tl.cdiv / tl.zeros): triton.language's own @jit helpers cannot run in an
    # interpreted kernel if triton was imported before TRITON_INTERPRET=1 was set (torch.compile
    # on a CPU imports triton, for example).
    num_pid_m = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n = (Kg + BLOCK_N - 1) // BLOCK_N
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixels
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channels within the group
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < Kg

    # ---- rows: output pixel m -> (n, p, q) -> top-left input tap (ih0, iw0)
    if INT64:  # every index that multiplies a stride becomes 64-bit
        offs_m = offs_m.to(tl.int64)
        offs_n = offs_n.to(tl.int64)
        offs_k = offs_k.to(tl.int64)
        g = g.to(tl.int64)
    n_idx = offs_m // (P * Q)
    pq = offs_m % (P * Q)
    p_idx = pq // Q
    q_idx = pq % Q
    ih0 = p_idx * stride_h - pad_h
    iw0 = q_idx * stride_w - pad_w
    row_off = n_idx * sxn + ih0 * sxh + iw0 * sxw + g * Cg * sxc  # [BLOCK_M] element offsets

    # ---- columns: output channel k of the whole tensor
    k_out = g * Kg + offs_n
    w_cols = w_ptr + k_out * swk  # [BLOCK_N] pointers

    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, dtype=tl.float32)
    # ---- reduction: filter taps (r, s) outside, BLOCK_K-channel blocks inside, flattened into one loop so
    # Triton pipelines it (nested loops with one or two channel blocks each would not). Per step the tap is a
    # scalar and the channels c0 .. c0+BLOCK_K are consecutive, so with channels_last input (sxc == 1) the
    # A tile is BLOCK_M rows of contiguous, 16-byte aligned vectors: the hints below let Triton prove it.
    num_cb = (Cg + BLOCK_K - 1) // BLOCK_K
    for t in range(0, R * S * num_cb):
        rs = t // num_cb
        c0 = (t - rs * num_cb) * BLOCK_K
        r = rs // S
        s = rs - r * S
        c = tl.max_contiguous(tl.multiple_of(c0 + offs_k, BLOCK_K), BLOCK_K)
        dh = r * dil_h
        dw = s * dil_w

        # A tile [BLOCK_M, BLOCK_K]: input taps, zero outside the image (padding) and the problem
        ih = ih0 + dh
        iw = iw0 + dw
        row_ok = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        if EVEN_C:  # Cg % BLOCK_K == 0: no channel tail, the mask is constant along each row
            a_mask = row_ok[:, None]
            b_mask = mask_n[None, :]
        else:
            mask_c = c < Cg
            a_mask = row_ok[:, None] & mask_c[None, :]
            b_mask = mask_c[:, None] & mask_n[None, :]
        a_off = (row_off + dh * sxh + dw * sxw)[:, None] + (c * sxc)[None, :]
        a = tl.load(x_ptr + a_off, mask=a_mask, other=0.0)
        if HAS_MODULATION:  # padding stays zero: 0·(0+1)+0
            sc = tl.load(scale_ptr + a_off, mask=a_mask, other=0.0).to(tl.float32)
            sf = tl.load(shift_ptr + a_off, mask=a_mask, other=0.0).to(tl.float32)
            a = (a.to(tl.float32) * (sc + 1.0) + sf).to(a.dtype)

        # B tile [BLOCK_K, BLOCK_N]: weight[k, c, r, s] (the ops layer passes it packed RSCK: k contiguous)
        b_ptrs = w_cols[None, :] + (c * swc + r * swr + s * sws)[:, None]
        b = tl.load(b_ptrs, mask=b_mask, other=0.0)

        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    # ---- fused epilogue, in fp32: bias, activation, residual; then cast and store
    y = acc
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k_out * sb, mask=mask_n, other=0.0)
        y = y + bias.to(tl.float32)[None, :]
    if ACTIVATION == 1:
        y = tl.where(y < 0, 0.0, y)  # keeps NaN, like torch.relu
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
    # output coordinates: channel k at pixel (p, q), or with a pixel shuffle channel k // r² at sub-pixel
    # (p·r + i, q·r + j) where (i, j) = divmod(k % r², r)
    if SHUFFLE > 1:
        sub = k_out % (SHUFFLE * SHUFFLE)
        ch = k_out // (SHUFFLE * SHUFFLE)
        oh = p_idx[:, None] * SHUFFLE + (sub // SHUFFLE)[None, :]
        ow = q_idx[:, None] * SHUFFLE + (sub % SHUFFLE)[None, :]
    else:
        ch = k_out
        oh = p_idx[:, None]
        ow = q_idx[:, None]
    if HAS_RESIDUAL:
        r_ptrs = res_ptr + (n_idx * srn)[:, None] + (ch * srk)[None, :] + oh * srp + ow * srq
        y = y + tl.load(r_ptrs, mask=out_mask, other=0.0).to(tl.float32)
    y_ptrs = y_ptr + (n_idx * syn)[:, None] + (ch * syk)[None, :] + oh * syp + ow * syq
    tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=out_mask)


# True when this module was imported with TRITON_INTERPRET=1 (the kernel runs on the CPU in numpy).
INTERPRETED = type(conv2d_kernel).__name__ == "InterpretedFunction"


# ----------------------------------------------------------------------------- tile configs
@dataclasses.dataclass(frozen=True)
class TileConfig:
    BLOCK_M: int
    BLOCK_N: int
    BLOCK_K: int
    GROUP_M: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self):
        for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v & (v - 1):
                raise ValueError(f"TileConfig.{name} must be a power of two >= 16 (tl.dot needs it), got {v!r}")
        if not isinstance(self.GROUP_M, int) or self.GROUP_M < 1:
            raise ValueError(f"TileConfig.GROUP_M must be a positive int, got {self.GROUP_M!r}")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise ValueError(f"TileConfig.num_warps must be a power of two <= 16, got {self.num_warps!r}")
        if not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise ValueError(f"TileConfig.num_stages must be a positive int, got {self.num_stages!r}")


# Named configs and per-architecture tuning candidates live in configs/triton.json beside this file.
# Shared memory per stage: (BLOCK_M + BLOCK_N) * BLOCK_K * element size.
_CONFIG_FILE = os.path.join(os.path.dirname(__file__), "configs", "triton.json")
with open(_CONFIG_FILE) as _f:
    _CONFIG_DATA = json.load(_f)
CONFIGS = {name: TileConfig(**fields) for name, fields in _CONFIG_DATA["configs"].items()}
CANDIDATES = _CONFIG_DATA["candidates"]


def _pow2_clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(x), 1))))


def choose_config(M: int, Kg: int, gemm_k: int, dtype: torch.dtype, interpreted: bool = INTERPRETED,
                  cg: Optional[int] = None) -> TileConfig:
    """Default tile config for one problem (GEMM sizes M x Kg x gemm_k per group, Cg input channels per group).

    A K step never crosses a filter tap, so BLOCK_K is at most Cg rounded up to a power of two (>= 16): the
    3-channel first conv runs 16-wide steps, not 64-wide ones that are 95 % padding.
    """
    cg = gemm_k if cg is None else cg
    if interpreted:
        base = CONFIGS["interpret"]
        return dataclasses.replace(
            base,
            BLOCK_M=_pow2_clamp(M, 16, base.BLOCK_M),
            BLOCK_N=_pow2_clamp(Kg, 16, 128),
            BLOCK_K=_pow2_clamp(cg, 16, 128),
        )
    # Measured on an H200 (benchmarks/results/2026-12-04_h200_run1/gpu_tune.jsonl, fp16, batch 16): 128x64
    # tiles with 32-wide K steps won on every SFTNet layer with more than 32 output channels, by 1.1-2x over
    # the k64 and 128x128 tiles (fewer registers, more CTAs per SM); 128x32 where Kg <= 32.
    half = dtype in (torch.float16, torch.bfloat16)
    small_m = M <= 4096  # e.g. 64x64 images: 128-row tiles would leave most of the SMs idle
    if Kg <= 32:
        name = "m64_n32_k32" if small_m else "m128_n32_k32"
    elif Kg <= 64 or half:
        name = "m64_n64_k32" if small_m else "m128_n64_k32"
    else:
        name = "m128_n128_k32"
    cfg = CONFIGS[name]
    return dataclasses.replace(cfg, BLOCK_K=min(cfg.BLOCK_K, _pow2_clamp(cg, 16, 128)))


def _resolve_config(config, M, Kg, gemm_k, dtype, cg) -> TileConfig:
    if config is None:
        return choose_config(M, Kg, gemm_k, dtype, cg=cg)
    if isinstance(config, TileConfig):
        return config
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)} (or a TileConfig / dict), got {config!r}")
        return CONFIGS[config]
    if isinstance(config, dict):  # a partial dict overrides the default chosen for this shape
        unknown = set(config) - {f.name for f in dataclasses.fields(TileConfig)}
        if unknown:
            allowed = [f.name for f in dataclasses.fields(TileConfig)]
            raise ValueError(f"config has unknown keys {sorted(unknown)}; allowed: {allowed}")
        return dataclasses.replace(choose_config(M, Kg, gemm_k, dtype, cg=cg), **config)
    raise TypeError(f"config must be None, a name in CONFIGS, a TileConfig or a dict, got {type(config).__name__}")


# ----------------------------------------------------------------------------- launcher
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_PRECISIONS = ("ieee", "tf32", "tf32x3")
IntPair = Union[int, Sequence[int]]


def _pair(v: IntPair, name: str, minimum: int) -> tuple:
    if isinstance(v, int):
        v = (v, v)
    v = tuple(int(e) for e in v)
    if len(v) != 2 or min(v) < minimum:
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {v!r}")
    return v


def _span(t: torch.Tensor) -> int:
    """Largest element offset a tensor reaches, plus one."""
    return 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()) if s > 0)


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = (1, 1),
    padding: IntPair = (0, 0),
    dilation: IntPair = (1, 1),
    groups: int = 1,
    activation: Optional[str] = None,
    negative_slope: float = 0.01,
    residual: Optional[torch.Tensor] = None,
    *,
    config: Union[None, str, TileConfig, dict] = None,
    input_precision: str = "ieee",
    pixel_shuffle: int = 1,
    modulation: Optional[tuple] = None,
) -> torch.Tensor:
    """`act(F.conv2d(input, weight, bias, stride, padding, dilation, groups)) + residual` in one kernel.

    input [N, C, H, W] (any strides: NCHW, channels_last, views), weight [K, C/groups, R, S],
    bias [K], residual [N, K, P, Q] (any strides). float32 / float16 / bfloat16, all one dtype;
    fp32 accumulation; the output has the input's dtype and F.conv2d's memory format
    (channels_last iff the input is channels_last). `input_precision` picks how fp32 operands
    are multiplied ("ieee" exact fp32, "tf32" tensor cores); `modulation=(scale, shift)` (shaped like the
    input) convolves input·(scale + 1) + shift instead, modulated as the A tiles are loaded (SFT layers);
    `config` forces a tile config (a name in CONFIGS, a TileConfig, or a dict overriding fields of the default).
    Full argument checks are sft_kernels.ops' job; this checks only what would otherwise crash or go wrong silently.
    Everything but the tensors' data (checks, output size, tile config, launch arguments) is worked out once per
    call signature and kept (`_plan`): a repeat call only allocates the output and launches, which matters at
    batch 1, where a conv runs in ~10 µs on a big GPU.
    """
    key = None
    if (type(stride) in _KEYABLE and type(padding) in _KEYABLE and type(dilation) in _KEYABLE
            and type(groups) is int and type(pixel_shuffle) is int and type(input_precision) is str
            and type(activation) in (str, type(None)) and type(config) in (str, type(None))
            and (modulation is None or type(modulation) is tuple and len(modulation) == 2
                 and all(isinstance(t, torch.Tensor) for t in modulation))
            and all(type(t) in _PLAIN for t in (input, weight, bias, residual))):
        key = (_meta(input), _meta(weight), _meta(bias), _meta(residual),
               *((_meta(modulation[0]), _meta(modulation[1])) if modulation is not None else (None, None)),
               stride, padding, dilation, groups, activation, config, input_precision, pixel_shuffle,
               _tune_generation(), os.environ.get("SFT_KERNELS_TRITON_CONFIG"),
               os.environ.get("SFT_KERNELS_LOG_CONFIG"))
    try:
        plan = _PLANS.get(key) if key is not None else None
    except TypeError:  # something unhashable inside a tuple argument: plan this call afresh
        key = plan = None
    if plan is None:
        plan = _plan(input, weight, bias, stride, padding, dilation, groups, activation, residual, config,
                     input_precision, pixel_shuffle, modulation)
        if key is not None and len(_PLANS) < 4096:
            _PLANS[key] = plan
    out_shape, fmt, grid, scalars, constexprs = plan
    y = torch.empty(out_shape, device=input.device, dtype=input.dtype, memory_format=fmt)
    if grid is None:  # nothing to compute
        return y
    b = bias if bias is not None else y
    res = residual if residual is not None else y
    mods = [input, input]
    if modulation is not None:  # the kernel indexes scale/shift with the input's strides
        mods = [t if t.stride() == input.stride() else
                torch.empty_strided(input.shape, input.stride(), dtype=t.dtype, device=t.device).copy_(t)
                for t in modulation]
    conv2d_kernel[grid](input, weight, b, res, y, *mods, *scalars, float(negative_slope), **constexprs)
    return y


_KEYABLE = (int, tuple)
_PLAIN = (torch.Tensor, torch.nn.Parameter, type(None))  # subclasses may carry their own semantics: never cached
_PLANS: dict = {}  # call signature -> (out shape, memory format, grid, scalar args, constexpr args)


def _meta(t):
    return None if t is None else (t.shape, t.stride(), t.dtype, t.device)


def _tune_generation() -> int:
    from . import triton_tune

    return triton_tune.GENERATION


def _plan(input, weight, bias, stride, padding, dilation, groups, activation, residual, config, input_precision,
          pixel_shuffle, modulation) -> tuple:
    """Checks, output size and format, tile config and the kernel's non-tensor arguments for one call signature."""
    for name, t in (("input", input), ("weight", weight)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor, got {getattr(t, 'shape', type(t).__name__)}")
    if input.dtype not in _DTYPES:
        raise ValueError(f"input dtype must be one of {_DTYPES}, got {input.dtype}")
    scale, shift = modulation if modulation is not None else (None, None)
    for name, t in (("weight", weight), ("bias", bias), ("residual", residual), ("scale", scale), ("shift", shift)):
        if t is not None and (t.device != input.device or t.dtype != input.dtype):
            raise ValueError(f"{name} ({t.dtype}, {t.device}) must match input ({input.dtype}, {input.device})")
    if activation not in checks.ACTIVATIONS:
        raise ValueError(f"activation must be one of {checks.ACTIVATIONS}, got {activation!r}")
    if input_precision not in _PRECISIONS:
        raise ValueError(f"input_precision must be one of {_PRECISIONS}, got {input_precision!r}")
    if not INTERPRETED and input.device.type != "cuda":
        raise ValueError(
            f"the compiled Triton conv2d needs CUDA tensors, got {input.device}; on a CPU import this module "
            "through sft_kernels.runtime.triton.load(...), which turns on the Triton interpreter"
        )
    sh, sw = _pair(stride, "stride", 1)
    ph, pw = _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)

    N, C, H, W = input.shape
    K, Cg, R, S = weight.shape
    if not isinstance(groups, int) or groups < 1 or C % groups or K % groups or Cg * groups != C:
        raise ValueError(f"groups={groups!r} does not fit input channels {C} and weight {tuple(weight.shape)}")
    if groups > 65535:
        raise ValueError(f"groups={groups} exceeds the CUDA grid limit (65535) of this kernel")
    Kg = K // groups
    P, Q = checks.conv_output_hw(H, W, R, S, (sh, sw), (ph, pw), (dh, dw))
    for name, t in (("scale", scale), ("shift", shift)):
        if t is not None and t.shape != input.shape:
            raise ValueError(f"modulation {name} must have the input's shape {tuple(input.shape)}, "
                             f"got {tuple(t.shape)}")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != K):
        raise ValueError(f"bias must have shape ({K},), got {tuple(bias.shape)}")
    r_ = pixel_shuffle
    if not isinstance(r_, int) or r_ < 1 or K % (r_ * r_):
        raise ValueError(f"pixel_shuffle must be a positive int whose square divides {K}, got {pixel_shuffle!r}")
    out_shape = (N, K // (r_ * r_), P * r_, Q * r_)
    if residual is not None and tuple(residual.shape) != out_shape:
        raise ValueError(f"residual must have the output's shape {out_shape}, got {tuple(residual.shape)}")

    channels_last = checks.is_channels_last_strided(input)  # F.conv2d's rule (ATen suggest_memory_format)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    M, gemm_k = N * P * Q, Cg * R * S
    if M * K == 0:
        return out_shape, fmt, None, None, None

    if M >= 2**31:
        raise ValueError(f"N*P*Q = {M} output pixels exceed the kernel's int32 row index; split the batch")

    if config is None:  # a pinned name (env) or this shape's tuned winner, else the default heuristic
        from . import triton_tune

        config = triton_tune.lookup(input.dtype, Cg, Kg, R, S, (sh, sw), (dh, dw), M)
    cfg = _resolve_config(config, M, Kg, gemm_k, input.dtype, Cg)
    if os.environ.get("SFT_KERNELS_LOG_CONFIG") == "1":
        print(f"sft_kernels.ops.conv2d.triton: M={M} N={Kg} K={gemm_k} {input.dtype} -> {cfg}", file=sys.stderr)
    upcast = INTERPRETED and input.dtype == torch.bfloat16  # the interpreter's bf16 tl.dot is wrong
    precision = input_precision if (input.dtype == torch.float32 or upcast) else "tf32"
    y = torch.empty(out_shape, device="meta", dtype=input.dtype, memory_format=fmt)  # its strides
    int64 = max(_span(t) for t in (input, weight, y, residual, scale, shift) if t is not None) >= 2**31
    rs = residual.stride() if residual is not None else (0, 0, 0, 0)

    grid = (triton.cdiv(M, cfg.BLOCK_M) * triton.cdiv(Kg, cfg.BLOCK_N), groups)
    scalars = (N, H, W, P, Q, R, S, Cg, Kg, sh, sw, ph, pw, dh, dw, *input.stride(), *weight.stride(), *y.stride(),
               *rs, bias.stride(0) if bias is not None else 0)
    constexprs = dict(
        HAS_BIAS=bias is not None,
        ACTIVATION=checks.ACTIVATIONS.index(activation),
        HAS_RESIDUAL=residual is not None,
        HAS_MODULATION=modulation is not None,
        INPUT_PRECISION=precision,
        UPCAST=upcast,
        INT64=int64,
        EVEN_C=Cg % cfg.BLOCK_K == 0,
        SHUFFLE=r_,
        BLOCK_M=cfg.BLOCK_M,
        BLOCK_N=cfg.BLOCK_N,
        BLOCK_K=cfg.BLOCK_K,
        GROUP_M=cfg.GROUP_M,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out_shape, fmt, grid, scalars, constexprs
