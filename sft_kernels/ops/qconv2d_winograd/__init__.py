"""sft.qconv2d_winograd: an int8 3×3 conv (stride 1, padding 1) in the Winograd domain, F(2×2, 3×3).

    v = Bᵀ(d − x_zero_point)B of each 4×4 input tile, requantized per position: q = sat8((v·mult[p] + 2¹⁴) >> 15)
    M = Σ_c q·u_q · x_scale·u_scale[p, k]·2¹⁵/mult[p]        (int32 sums; u = G w Gᵀ quantized per (p, k))
    y = act(AᵀMA + bias) + residual;  out = y (float32), or uint8 clamp(round(y / out_scale) + out_zero_point)

16 int8 multiplies per 2×2 outputs instead of 36: 2.25× fewer than sft.qconv2d's direct conv, at the cost of
quantizing the transformed tiles and weights (the PSNR cost is measured per layer by quantize_, which uses it with
`Int8Config(winograd=True)`). Not an exact re-arrangement of the direct int8 conv, so it has its own reference: the
integer sums are exact there too, and outputs agree with it to float32 rounding (requantized ones within one step).

`winograd_weight(w)` makes (u_q, u_scale) from a float 3×3 weight; `calibrate_mult(uint8 samples, zero point)` the
16 multipliers (or `mult_for_range(tile_range(float map, scale, zero point))`, one map at a time). `reference.py`
holds them and the reference, `cpu.py` the launcher of the cpu kernel (csrc/cpu/qconv2d/qwinograd.cpp: on AVX-512
VNNI / AMX CPUs the input transform in int16 and each position's sums on the VNNI tile loop, portable loops on
others; the output transform into the int8 conv's epilogue).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.dispatch import Op, dispatch, eager_signature_ok, meta
from . import cpu
from . import reference as ref
from .reference import (POSITIONS, calibrate_mult, mult_for_range, mult_ok, tile_range,  # noqa: F401
                        winograd_weight)

registry.register_op("qconv2d_winograd", {"reference": (torch.uint8, torch.float32),
                                          "cpu": (torch.uint8, torch.float32)})


def _impl_reference(x, u_q, u_scale, mult, b, res, x_scale, x_zp, act, slope, o_scale, o_zp, shuffle=1, r_scale=0.0,
                    r_zp=0):
    from ..qconv2d.reference import dequantize

    res = dequantize(res, r_scale, r_zp) if r_scale > 0 else res
    y = ref.qconv2d_winograd(x, x_scale, x_zp, u_q, u_scale, mult, b, res, act, slope, o_scale, o_zp)
    y = y if o_scale > 0 else y.to(torch.float32)
    y = torch.nn.functional.pixel_shuffle(y, shuffle) if shuffle > 1 else y
    return y.contiguous(memory_format=checks.output_memory_format(x))


_IMPLS = {"reference": _impl_reference, "cpu": cpu.qconv2d_winograd}


@torch.library.custom_op("sft::qconv2d_winograd", mutates_args=())
def _op(input: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, mult: torch.Tensor,
        bias: Optional[torch.Tensor], residual: Optional[torch.Tensor], input_scale: float, input_zero_point: int,
        activation: Optional[str], negative_slope: float, out_scale: float, out_zero_point: int, pixel_shuffle: int,
        residual_scale: float, residual_zero_point: int, backend: str) -> torch.Tensor:
    return _IMPLS[backend](input, weight, weight_scale, mult, bias, residual, input_scale, input_zero_point,
                           activation, negative_slope, out_scale, out_zero_point, pixel_shuffle, residual_scale,
                           residual_zero_point)


@_op.register_fake
def _(input, weight, weight_scale, mult, bias, residual, input_scale, input_zero_point, activation, negative_slope,
      out_scale, out_zero_point, pixel_shuffle, residual_scale, residual_zero_point, backend):
    n, _, h, w = input.shape
    r = pixel_shuffle
    out = input.new_empty((n, weight.shape[1] // (r * r), h * r, w * r),
                          dtype=torch.uint8 if out_scale > 0 else torch.float32)
    return out.contiguous(memory_format=checks.output_memory_format(input))


OP = Op("qconv2d_winograd", _op, _IMPLS, autotune=False)


def _check(input, weight, weight_scale, mult, bias, residual, input_scale, input_zero_point, activation,
           negative_slope, out_scale, out_zero_point, pixel_shuffle, residual_quant) -> tuple:
    checks.tensor(input, "input", 4, dtypes=(torch.uint8, torch.float32))
    checks.tensor(weight, "weight", 3, dtypes=(torch.int8,))
    if weight.shape[0] != POSITIONS or weight.shape[2] != input.shape[1]:
        raise ValueError(f"weight must be the transformed int8 weight [16, K, C] with C = {input.shape[1]} (the "
                         f"input's channels; make it with winograd_weight), got {tuple(weight.shape)}")
    k = weight.shape[1]
    if input.shape[1] < 16:
        raise ValueError(f"qconv2d_winograd needs at least 16 input channels, got {input.shape[1]} (use qconv2d)")
    checks.tensor(weight_scale, "weight_scale", 2, dtypes=(torch.float32,))
    eager = not torch.compiler.is_compiling()  # value checks: eager only (a traced bool() breaks the graph)
    if tuple(weight_scale.shape) != (POSITIONS, k) or (eager and not bool((weight_scale > 0).all())):
        raise ValueError(f"weight_scale must hold positive scales [16, {k}], got shape {tuple(weight_scale.shape)}")
    checks.tensor(mult, "mult", 1, dtypes=(torch.int32,))
    if mult.shape[0] != POSITIONS or (eager and not mult_ok(mult)):
        raise ValueError("mult must hold 16 Q15 multipliers in [1, 32767] (make them with calibrate_mult)")
    if bias is not None:
        checks.tensor(bias, "bias", 1, dtypes=(torch.float32,))
        if bias.shape[0] != k:
            raise ValueError(f"bias must have {k} elements, got {bias.shape[0]}")
    if not isinstance(input_scale, (int, float)) or not input_scale > 0:
        raise ValueError(f"input_scale must be a positive number, got {input_scale!r}")
    if not isinstance(out_scale, (int, float)) or not out_scale >= 0:
        raise ValueError(f"out_scale must be >= 0 (0: float32 output), got {out_scale!r}")
    for name, v in (("input_zero_point", input_zero_point), ("out_zero_point", out_zero_point)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
            raise ValueError(f"{name} must be an int in [0, 255] (uint8 affine), got {v!r}")
    if residual_quant is None:
        rs, rz = 0.0, 0
        if residual is not None:
            checks.tensor(residual, "residual", 4, dtypes=(torch.float32,))
    else:
        rs, rz = checks.uint8_affine_pair("residual_quant", residual_quant)
        checks.tensor(residual, "residual", 4, dtypes=(torch.uint8,))
    if residual is not None and tuple(residual.shape) != (input.shape[0], k, *input.shape[2:]):
        raise checks.residual_shape_error(residual, (input.shape[0], k, *input.shape[2:]), pixel_shuffle)
    checks.activation(activation)
    checks.pixel_shuffle(pixel_shuffle, k)
    return (float(input_scale), int(input_zero_point), activation, float(negative_slope), float(out_scale),
            int(out_zero_point), int(pixel_shuffle), float(rs), int(rz))


def qconv2d_winograd(input: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, mult: torch.Tensor,
                     bias: Optional[torch.Tensor] = None, *, input_scale: float, input_zero_point: int,
                     activation: Optional[str] = None, negative_slope: float = 0.01,
                     residual: Optional[torch.Tensor] = None, out_scale: float = 0.0, out_zero_point: int = 0,
                     pixel_shuffle: int = 1, residual_quant: Optional[tuple] = None,
                     backend: Optional[str] = None) -> torch.Tensor:
    """The Winograd-domain int8 3×3 conv (stride 1, padding 1; see the module docstring). input: uint8 [N, C, H, W]
    with (input_scale, input_zero_point), or float32 quantized with them on the way in (C >= 16); weight, weight_scale
    from winograd_weight; mult from calibrate_mult. Epilogue as sft.qconv2d's: bias, activation, residual (float32,
    or uint8 with residual_quant=(scale, zero_point); with pixel_shuffle, shaped like the shuffled output), uint8
    output with out_scale > 0, then PixelShuffle."""
    residual = checks.shuffled_residual(residual, pixel_shuffle)
    tensors = (input, weight, weight_scale, mult, bias, residual)
    sig = None
    # a repeat of a validated call skips the checks (~40 µs of small tensor ops a call); the weights' values are
    # checked on the first call of a signature only, as sft.qconv2d's
    if (eager_signature_ok(*tensors) and type(input_scale) is float and type(input_zero_point) is int
            and type(out_scale) is float and type(out_zero_point) is int and type(pixel_shuffle) is int
            and type(negative_slope) in (int, float) and type(activation) in (str, type(None))
            and (backend is None or type(backend) is str)
            and (residual_quant is None or (type(residual_quant) is tuple and len(residual_quant) == 2
                                            and type(residual_quant[0]) is float and type(residual_quant[1]) is int))):
        sig = (meta(input), tuple(None if t is None else (t.shape, t.dtype, t.is_cpu) for t in tensors[1:]),
               input_scale, input_zero_point, activation, float(negative_slope), out_scale, out_zero_point,
               pixel_shuffle, residual_quant)
    return dispatch(OP, backend, tensors, sig,
                    lambda: _check(input, weight, weight_scale, mult, bias, residual, input_scale, input_zero_point,
                                   activation, negative_slope, out_scale, out_zero_point, pixel_shuffle,
                                   residual_quant),
                    input)
