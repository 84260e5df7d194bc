"""sft.qconv2d: an int8 conv with the requantization fused into its epilogue.

    y = act(Σ (x_q − x_zero_point)·w_q · x_scale·w_scale[k] + bias[k]) + residual
    out = y (float32), or with out_scale > 0: clamp(round(y / out_scale) + out_zero_point, 0, 255) (uint8)

x_q: uint8 activations, per-tensor affine (x_scale, x_zero_point), or float32 ones quantized with them on the way in;
w_q: int8 weights [K, C/groups, R, S], per-output-channel symmetric scales w_scale [K]; bias and residual float32.
Integer sums are exact (int32 in kernels, exact float64 in the reference); outputs agree with the float64 reference
to the float32 epilogue's rounding, and requantized outputs to within one quantization step. pixel_shuffle=r returns
PixelShuffle(r) of the result (the cpu VNNI store writes each output to its shuffled place).

The op (schema `sft::qconv2d`, fake kernel, registry entry), its checks and its public function; `reference.py` holds
the integer reference and the quantize / dequantize helpers, `cpu.py` the cpu kernels' launcher (dense, depthwise,
per group), `triton.py` the Triton kernel and its launcher (configs/triton.json), `cuda.py` the launcher of the
tensor-core kernel (csrc/cuda/qconv2d/; grouped convs included), `onnx.py` the ONNX (QDQ) form.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime import triton as runtime_triton
from ...runtime.dispatch import PLAIN, Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("qconv2d", {"reference": (torch.uint8, torch.float32), "cpu": (torch.uint8, torch.float32),
                                 "triton": (torch.uint8, torch.float32), "cuda": (torch.uint8, torch.float32)})


def _shuffled(y, shuffle, x):
    """PixelShuffle(shuffle) of a backend's output, in the output layout of x."""
    y = torch.nn.functional.pixel_shuffle(y, shuffle) if shuffle > 1 else y
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _impl_reference(x, w, ws, b, res, ms, mt, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale,
                    o_zp, shuffle=1, o_dtype=None, r_scale=0.0, r_zp=0):
    xm = x if ms is None else x * (ms + 1) + mt
    res = ref.dequantize(res, r_scale, r_zp) if r_scale > 0 else res
    y = ref.qconv2d(xm, x_scale, x_zp, w, ws, b, res, stride, padding, dilation, groups, act, slope, o_scale, o_zp,
                    out_dtype=o_dtype)
    if not o_scale > 0:
        y = y.to(torch.float32) if o_dtype is None else y.to(torch.float32).to(o_dtype)
    return _shuffled(y, shuffle, x)


def _impl_cpu(x, w, ws, b, res, ms, mt, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale,
              o_zp, shuffle=1, o_dtype=None, r_scale=0.0, r_zp=0):
    return cpu.qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale,
                       o_zp, ms, mt, shuffle, o_dtype, r_scale, r_zp)


def _uint8_input(x, ms, mt, x_scale, x_zp):
    """The GPU kernels read uint8: a float input is modulated and quantized first (the cpu kernel fuses this)."""
    if not x.is_floating_point():
        return x
    return ref.quantize(x if ms is None else x * (ms + 1) + mt, x_scale, x_zp)


def _impl_triton(x, w, ws, b, res, ms, mt, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale,
                 o_zp, shuffle=1, o_dtype=None, r_scale=0.0, r_zp=0):
    if groups != 1:  # the Triton kernel is ungrouped: the reference (exact) takes grouped convs
        return _impl_reference(x, w, ws, b, res, ms, mt, x_scale, x_zp, stride, padding, dilation, groups, act,
                               slope, o_scale, o_zp, shuffle, o_dtype, r_scale, r_zp)
    xu = _uint8_input(x, ms, mt, x_scale, x_zp)
    return runtime_triton.load("sft_kernels.ops.qconv2d.triton").qconv2d(
        xu, w, ws, b, res, x_scale, x_zp, tuple(stride), tuple(padding), tuple(dilation), act, slope, o_scale, o_zp,
        o_dtype, r_scale, r_zp, shuffle)


def _impl_cuda(x, w, ws, b, res, ms, mt, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp,
               shuffle=1, o_dtype=None, r_scale=0.0, r_zp=0):
    from . import cuda

    xu = _uint8_input(x, ms, mt, x_scale, x_zp)
    y = cuda.qconv2d(xu, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp,
                     o_dtype, r_scale, r_zp)
    return _shuffled(y, shuffle, x) if shuffle > 1 else y


_IMPLS = {"reference": _impl_reference, "cpu": _impl_cpu, "triton": _impl_triton, "cuda": _impl_cuda}


@torch.library.custom_op("sft::qconv2d", mutates_args=())
def _qconv2d_op(input: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                residual: Optional[torch.Tensor], mod_scale: Optional[torch.Tensor],
                mod_shift: Optional[torch.Tensor], input_scale: float, input_zero_point: int, stride: list[int],
                padding: list[int], dilation: list[int], groups: int, activation: Optional[str],
                negative_slope: float, out_scale: float, out_zero_point: int, pixel_shuffle: int,
                out_dtype: Optional[torch.dtype], residual_scale: float, residual_zero_point: int,
                backend: str) -> torch.Tensor:
    return _IMPLS[backend](input, weight, weight_scale, bias, residual, mod_scale, mod_shift, input_scale,
                           input_zero_point, stride, padding, dilation, groups, activation, negative_slope, out_scale,
                           out_zero_point, pixel_shuffle, out_dtype, residual_scale, residual_zero_point)


@_qconv2d_op.register_fake
def _(input, weight, weight_scale, bias, residual, mod_scale, mod_shift, input_scale, input_zero_point, stride,
      padding, dilation, groups, activation, negative_slope, out_scale, out_zero_point, pixel_shuffle, out_dtype,
      residual_scale, residual_zero_point, backend):
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], weight.shape[2], weight.shape[3], stride, padding,
                                 dilation)
    r = pixel_shuffle
    dtype = out_dtype or (torch.uint8 if out_scale > 0 else torch.float32)
    out = input.new_empty((input.shape[0], weight.shape[0] // (r * r), p * r, q * r), dtype=dtype)
    return out.contiguous(memory_format=checks.output_memory_format(input))


OP = Op("qconv2d", _qconv2d_op, _IMPLS, autotune=False)  # one fast backend per device: never time the reference


_OUT_DTYPES = (torch.uint8, torch.int8, torch.float32, torch.bfloat16)


def _check_types(out_scale, out_zero_point, residual, out_dtype, residual_quant) -> tuple:
    """(out_dtype, residual scale, residual zero point) of a call, checked: (None, 0.0, 0) for the defaults."""
    quant = isinstance(out_scale, (int, float)) and out_scale > 0
    if out_dtype is not None and out_dtype not in _OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {_OUT_DTYPES} (or None), got {out_dtype!r}")
    if out_dtype in (torch.uint8, torch.int8) and not quant:
        raise ValueError(f"out_dtype={out_dtype} needs out_scale > 0 (a requantized output), got {out_scale!r}")
    if out_dtype in (torch.float32, torch.bfloat16) and quant:
        raise ValueError(f"out_dtype={out_dtype} is a float output: out_scale must be 0, got {out_scale!r}")
    lo = -128 if out_dtype == torch.int8 else 0
    if not isinstance(out_zero_point, int) or isinstance(out_zero_point, bool) or \
            not lo <= out_zero_point <= lo + 255:
        raise ValueError(f"out_zero_point must be an int in [{lo}, {lo + 255}] ({'int8' if lo else 'uint8'} "
                         f"affine), got {out_zero_point!r}")
    if residual_quant is None:
        if residual is not None:
            checks.tensor(residual, "residual", 4, dtypes=(torch.float32,))
        rs, rz = 0.0, 0
    else:
        rs, rz = checks.uint8_affine_pair("residual_quant", residual_quant)
        if not isinstance(residual, torch.Tensor) or residual.dtype != torch.uint8:
            raise ValueError("residual_quant=(scale, zero_point) describes a uint8 residual; got "
                             f"{type(residual).__name__ if not isinstance(residual, torch.Tensor) else residual.dtype}")
        checks.tensor(residual, "residual", 4, dtypes=(torch.uint8,))
    return (None if out_dtype in (torch.uint8, torch.float32) else out_dtype), float(rs), int(rz)


def _check(input, weight, weight_scale, bias, residual, input_scale, input_zero_point, stride, padding, dilation,
           groups, activation, negative_slope, out_scale, out_zero_point, mod_scale, mod_shift,
           pixel_shuffle=1, out_dtype=None, residual_quant=None) -> tuple:
    o_dtype, r_scale, r_zp = _check_types(out_scale, out_zero_point, residual, out_dtype, residual_quant)
    checks.tensor(input, "input", 4, dtypes=(torch.uint8, torch.float32))
    checks.tensor(weight, "weight", 4, dtypes=(torch.int8,))
    if weight.device != input.device:
        raise ValueError(f"weight is on {weight.device} but input is on {input.device}")
    k = weight.shape[0]
    checks.tensor(weight_scale, "weight_scale", 1, dtypes=(torch.float32,))
    positive = torch.compiler.is_compiling() or bool((weight_scale > 0).all())  # a value check: eager only
    if weight_scale.shape[0] != k:
        raise ValueError(f"weight_scale must hold {k} per-channel scales, got shape {tuple(weight_scale.shape)}")
    if not positive:
        raise ValueError("weight_scale must be positive and finite in every channel, got "
                         f"{weight_scale[~(weight_scale > 0)][:4].tolist()} among its values")
    if 0 in weight.shape[2:]:
        raise ValueError(f"weight of shape {tuple(weight.shape)} has an empty kernel: it must be at least 1×1")
    if bias is not None:
        checks.tensor(bias, "bias", 1, dtypes=(torch.float32,))
        if bias.shape[0] != k:
            raise ValueError(f"bias must have {k} elements, got {bias.shape[0]}")
    for name, v in (("input_scale", input_scale), ("out_scale", out_scale)):
        if not isinstance(v, (int, float)) or not v >= 0 or (name == "input_scale" and v == 0):
            raise ValueError(f"{name} must be a positive number{' (0: float output)' if name == 'out_scale' else ''}, "
                             f"got {v!r}")
    if not isinstance(input_zero_point, int) or isinstance(input_zero_point, bool) or not 0 <= input_zero_point <= 255:
        raise ValueError(f"input_zero_point must be an int in [0, 255] (uint8 affine), got {input_zero_point!r}")
    if not isinstance(groups, int) or groups < 1 or input.shape[1] % groups or k % groups or \
            weight.shape[1] * groups != input.shape[1]:
        raise ValueError(f"weight of shape {tuple(weight.shape)} with groups={groups!r} does not fit input channels "
                         f"{input.shape[1]}")
    stride, padding, dilation = (checks.pair(stride, "stride", 1), checks.pair(padding, "padding", 0),
                                 checks.pair(dilation, "dilation", 1))
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], weight.shape[2], weight.shape[3], stride, padding,
                                 dilation)
    if residual is not None:
        if tuple(residual.shape) != (input.shape[0], k, p, q):
            raise checks.residual_shape_error(residual, (input.shape[0], k, p, q), pixel_shuffle)
    checks.activation(activation)
    for name, t in (("modulation scale", mod_scale), ("modulation shift", mod_shift)):
        if t is not None:
            checks.tensor(t, name, 4, dtypes=(torch.float32,))
            if t.shape != input.shape or input.dtype != torch.float32:
                raise ValueError(f"modulation=(scale, shift) needs a float32 input and maps shaped like it "
                                 f"{tuple(input.shape)}, got {name} {tuple(t.shape)} on a {input.dtype} input")
    checks.pixel_shuffle(pixel_shuffle, k)
    return (float(input_scale), int(input_zero_point), stride, padding, dilation, groups, activation,
            float(negative_slope), float(out_scale), int(out_zero_point), int(pixel_shuffle), o_dtype, r_scale, r_zp)


def _plain_tensor(t) -> bool:
    return t is None or type(t) in PLAIN


def _int_or_pair(v) -> bool:
    """An int or a tuple of two ints, exactly: the forms a dict key keeps apart (True == 1 as a key)."""
    return type(v) is int or (type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int)


def _meta(t):
    return None if t is None else (t.shape, t.dtype, t.is_cpu)


def qconv2d(input, weight, weight_scale, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            input_scale: float, input_zero_point: int, activation: Optional[str] = None,
            negative_slope: float = 0.01, residual: Optional[torch.Tensor] = None, out_scale: float = 0.0,
            out_zero_point: int = 0, modulation: Optional[tuple] = None, pixel_shuffle: int = 1,
            out_dtype: Optional[torch.dtype] = None, residual_quant: Optional[tuple] = None,
            backend: Optional[str] = None) -> torch.Tensor:
    """int8 conv with fused requantization (see the module docstring): uint8 input (scale, zero point), or float32
    quantized on the way in with that scale and zero point (fused into the kernel's input copy), int8 weight
    with per-output-channel scales, float32 bias and residual; float32 output, or uint8 with out_scale > 0.
    ``modulation=(scale, shift)`` (float input, maps shaped like it) convolves input·(scale + 1) + shift, applied as
    the input is quantized (SFTNet's SFT layers). ``pixel_shuffle=r`` returns F.pixel_shuffle of the result (the
    residual, as in sft.conv2d, is shaped like that shuffled output); the cpu and Triton kernels write each output
    to its shuffled place in the store (an SR network's upsampling convs).

    ``out_dtype``: torch.uint8 or torch.int8 (out_scale > 0; int8: clamp(round(y / out_scale) + out_zero_point,
    -128, 127) with out_zero_point in [-128, 127]), torch.float32 or torch.bfloat16 (out_scale = 0; bfloat16 rounded
    to nearest even); None: uint8 with out_scale > 0, else float32. ``residual_quant=(scale, zero_point)``: the
    residual is a uint8 map added as (residual − zero_point)·scale. Every kernel (cpu, Triton, CUDA) does both in its
    store; an int8 output is the uint8 one (zero point + 128) moved by 128, byte for byte."""
    if modulation is not None and not (isinstance(modulation, tuple) and len(modulation) == 2):
        raise TypeError("modulation must be a (scale, shift) tuple of tensors")
    residual = checks.shuffled_residual(residual, pixel_shuffle)
    ms, mt = modulation if modulation is not None else (None, None)
    tensors = (input, weight, weight_scale, bias, residual, ms, mt)
    sig = None
    # Written out, not with all(...) over generators: this runs on every call (~2 µs less per call).
    if (type(input) is torch.Tensor and _plain_tensor(weight) and _plain_tensor(weight_scale) and _plain_tensor(bias)
            and _plain_tensor(residual) and _plain_tensor(ms) and _plain_tensor(mt)
            and _int_or_pair(stride) and _int_or_pair(padding) and _int_or_pair(dilation) and type(groups) is int
            and type(input_zero_point) is int and type(out_zero_point) is int and type(pixel_shuffle) is int
            and type(input_scale) is float and type(out_scale) is float and type(negative_slope) in (int, float)
            and type(activation) in (str, type(None)) and (backend is None or type(backend) is str)
            and (out_dtype is None or type(out_dtype) is torch.dtype)
            and (residual_quant is None or (type(residual_quant) is tuple and len(residual_quant) == 2
                                            and type(residual_quant[1]) is int and type(residual_quant[0]) is float))
            and not torch.compiler.is_compiling()):
        sig = ((_meta(input), _meta(weight), _meta(weight_scale), _meta(bias), _meta(residual), _meta(ms), _meta(mt)),
               input.stride(), stride, padding, dilation, groups, activation, float(negative_slope), input_scale,
               input_zero_point, out_scale, out_zero_point, pixel_shuffle, out_dtype, residual_quant)
    return dispatch(OP, backend, tensors, sig,
                    lambda: _check(input, weight, weight_scale, bias, residual, input_scale, input_zero_point, stride,
                                   padding, dilation, groups, activation, negative_slope, out_scale, out_zero_point,
                                   ms, mt, pixel_shuffle, out_dtype, residual_quant),
                    input)

