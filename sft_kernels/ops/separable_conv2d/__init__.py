"""sft.separable_conv2d: depthwise conv (groups = channels, any channel multiplier) then 1×1 conv, with a mid
activation and the full epilogue (bias, activation, PixelShuffle, residual; the cpu and Triton kernels' stores write
each output to its shuffled place, the CUDA one too).

The op (schema `sft::separable_conv2d`, fake kernel, reference autograd, registry entry), its checks and its public
function; `reference.py` is the two-conv definition, `cpu.py` the fused CPU kernel's launcher, `triton.py` the fused
Triton kernel (depthwise tile in registers fed to `tl.dot`; configs/triton.json), `cuda.py` the fused CUDA kernel's
launcher (csrc/cuda/separable_conv2d/).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime import triton as runtime_triton
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import PLAIN, Op, dispatch, memo_entry
from . import cpu
from . import reference as ref

registry.register_op("separable_conv2d", {"reference": registry.FLOATS, "cpu": (torch.float32,),
                                          "triton": (torch.float32, torch.float16, torch.bfloat16),
                                          "cuda": (torch.float32, torch.float16, torch.bfloat16)})


def _shuffle_then_add(y, shuffle, res, x):
    """PixelShuffle(shuffle) of y, then the residual (shaped like the shuffled output), in x's output layout."""
    y = torch.nn.functional.pixel_shuffle(y, shuffle) if shuffle > 1 else y
    y = y + res if res is not None else y
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _reference(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1, backend=None):
    if shuffle > 1:
        y = ref.separable_conv2d(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope)
        return _shuffle_then_add(y, shuffle, res, x)
    y = ref.separable_conv2d(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope, res)
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _impl_cpu(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1):
    if x.shape[0] == 0:
        return _empty_out(x, dw, pw, stride, padding, dilation, shuffle)
    return cpu.separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle)


def _impl_triton(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1):
    return runtime_triton.load("sft_kernels.ops.separable_conv2d.triton").separable_conv2d(
        x, dw, pw, dwb, pwb, res, tuple(stride), tuple(padding), tuple(dilation), mid_act, act, slope, shuffle)


def _impl_cuda(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1):
    from . import cuda

    return cuda.separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle)


_IMPLS = {"reference": _reference, "cpu": _impl_cpu, "triton": _impl_triton, "cuda": _impl_cuda}


@torch.library.custom_op("sft::separable_conv2d", mutates_args=())
def _separable_op(input: torch.Tensor, dw_weight: torch.Tensor, pw_weight: torch.Tensor,
                  dw_bias: Optional[torch.Tensor], pw_bias: Optional[torch.Tensor], residual: Optional[torch.Tensor],
                  stride: list[int], padding: list[int], dilation: list[int], mid_activation: Optional[str],
                  activation: Optional[str], negative_slope: float, pixel_shuffle: int, backend: str) -> torch.Tensor:
    if input.shape[0] == 0:
        return _empty_out(input, dw_weight, pw_weight, stride, padding, dilation, pixel_shuffle)
    return _IMPLS[backend](input, dw_weight, pw_weight, dw_bias, pw_bias, residual, stride, padding, dilation,
                           mid_activation, activation, negative_slope, pixel_shuffle)


@_separable_op.register_fake
def _(input, dw_weight, pw_weight, dw_bias, pw_bias, residual, stride, padding, dilation, mid_activation, activation,
      negative_slope, pixel_shuffle, backend):
    return _empty_out(input, dw_weight, pw_weight, stride, padding, dilation, pixel_shuffle)


def _empty_out(input, dw_weight, pw_weight, stride, padding, dilation, shuffle=1):
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], dw_weight.shape[2], dw_weight.shape[3],
                                 stride, padding, dilation)
    out = input.new_empty((input.shape[0], pw_weight.shape[0] // (shuffle * shuffle), p * shuffle, q * shuffle))
    return out.contiguous(memory_format=checks.output_memory_format(input))


register_reference_autograd(_separable_op, _reference, (0, 1, 2, 3, 4, 5))

OP = Op("separable_conv2d", _separable_op, _IMPLS)


def check_pointwise(input, dw_weight, pw_weight, pw_bias) -> None:
    """The 1×1 conv after a depthwise one (also sft.inverted_residual's projection): K × C·m × 1 × 1, its bias K."""
    checks.tensor(pw_weight, "pw_weight", 4, like=input)
    cm = dw_weight.shape[0]
    if tuple(pw_weight.shape[1:]) != (cm, 1, 1):
        raise ValueError(f"pw_weight must have shape (K, {cm}, 1, 1), got {tuple(pw_weight.shape)}")
    if pw_bias is not None:
        checks.tensor(pw_bias, "pw_bias", 1, like=input)
        if pw_bias.shape[0] != pw_weight.shape[0]:
            raise ValueError(f"pw_bias must have {pw_weight.shape[0]} elements, got {pw_bias.shape[0]}")


def _check(input, dw_weight, pw_weight, dw_bias, pw_bias, residual, stride, padding, dilation, mid_activation,
           activation, negative_slope, pixel_shuffle=1) -> tuple:
    stride, padding, dilation, (p, q) = checks.conv_args(input, dw_weight, dw_bias, stride, padding, dilation,
                                                         input.shape[1] if input.dim() == 4 else 1)
    check_pointwise(input, dw_weight, pw_weight, pw_bias)
    k, r = pw_weight.shape[0], checks.pixel_shuffle(pixel_shuffle, pw_weight.shape[0])
    checks.residual(residual, "residual", (input.shape[0], k // (r * r), p * r, q * r), input)
    checks.activation(mid_activation)
    checks.activation(activation)
    return stride, padding, dilation, mid_activation, activation, float(negative_slope), r


def separable_conv2d(input, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=1, padding=0, dilation=1,
                     *, mid_activation: Optional[str] = None, activation: Optional[str] = None,
                     negative_slope: float = 0.01, residual: Optional[torch.Tensor] = None,
                     pixel_shuffle: int = 1, backend: Optional[str] = None) -> torch.Tensor:
    """``act(pw(mid_act(dw(input))) + pw_bias) + residual``: dw_weight is C·m×1×R×S (depthwise, groups = C,
    channel multiplier m), pw_weight is K×C·m×1×1. Same result as two F.conv2d calls; the cpu backend runs both in
    one pass without writing the depthwise map. The output follows F.conv2d's layout rule (channels_last in,
    channels_last out). ``pixel_shuffle`` r > 1 applies ``F.pixel_shuffle(y, r)`` after the activation and before
    the residual add, as sft.conv2d does (the residual is shaped like the shuffled output); every backend's kernel
    writes each output (and adds the residual) at its shuffled place."""
    tensors = (input, dw_weight, pw_weight, dw_bias, pw_bias, residual)
    sig = _signature(tensors, stride, padding, dilation, mid_activation, activation, negative_slope, pixel_shuffle,
                     backend)
    return dispatch(OP, backend, tensors, sig,
                    lambda: _check(input, dw_weight, pw_weight, dw_bias, pw_bias, residual, stride, padding,
                                   dilation, mid_activation, activation, negative_slope, pixel_shuffle), input)


def _signature(tensors, stride, padding, dilation, mid_activation, activation, negative_slope, pixel_shuffle,
               backend):
    """The call's memo key for dispatch, or None where it cannot have one (tensor subclasses, torch.compile,
    argument forms a dict key would confuse)."""
    input = tensors[0]
    if not (type(input) is torch.Tensor and all(t is None or type(t) in PLAIN for t in tensors)
            and all(type(v) is int or (type(v) is tuple and len(v) == 2 and all(type(e) is int for e in v))
                    for v in (stride, padding, dilation))
            and type(mid_activation) in (str, type(None)) and type(activation) in (str, type(None))
            and type(negative_slope) in (int, float) and (backend is None or type(backend) is str)
            and type(pixel_shuffle) is int and input.dim() == 4 and not torch.compiler.is_compiling()):
        return None
    return (tuple((t.shape, t.dtype, t.is_cpu) if t is not None else None for t in tensors), input.stride(),
            stride, padding, dilation, mid_activation, activation, float(negative_slope), pixel_shuffle)


def bound(input, dw_weight, pw_weight, dw_bias, pw_bias, residual, stride, padding, dilation, mid_activation,
          activation, negative_slope, backend):
    """fn(input, dw_weight, pw_weight, dw_bias, pw_bias, residual) running this call as dispatch's memo would, once
    the call has run and its backend choice is final; else None (as ops.conv2d.bound, for SeparableConv2d)."""
    tensors = (input, dw_weight, pw_weight, dw_bias, pw_bias, residual)
    sig = _signature(tensors, stride, padding, dilation, mid_activation, activation, negative_slope, 1, backend)
    hit = memo_entry(OP, backend, sig) if sig is not None else None
    if hit is None:
        return None
    fn, consts = hit[0], hit[1]
    return lambda *t: fn(*t, *consts)

