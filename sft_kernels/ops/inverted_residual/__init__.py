"""sft.inverted_residual: MobileNetV2's inverted residual block as one op, 1×1 expand conv (+ activation),
depthwise conv (+ activation), 1×1 projection with the full epilogue (bias, activation, residual).

The expanded map (E channels at the input's resolution, 6× the input's channels in MobileNetV2) is what PyTorch,
and onnxruntime, write and read back; the cpu kernel keeps each thread's expanded rows in a small window in its L2
and never writes the map. `reference.py` is the three-conv definition, `cpu.py` the fused kernel's launcher. Other
backends have no fused kernel: `fuse_for_inference` builds this op only where the cpu backend runs.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import PLAIN, Op, dispatch, memo_entry
from ..separable_conv2d import check_pointwise
from . import cpu
from . import reference as ref

registry.register_op("inverted_residual", {"reference": registry.FLOATS, "cpu": (torch.float32,)})


def _reference(x, ex, dw, pw, exb, dwb, pwb, res, stride, padding, dilation, ex_act, mid_act, act, slope,
               backend=None):
    y = ref.inverted_residual(x, ex, dw, pw, exb, dwb, pwb, stride, padding, dilation, ex_act, mid_act, act, slope,
                              res)
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _impl_cpu(x, ex, dw, pw, exb, dwb, pwb, res, stride, padding, dilation, ex_act, mid_act, act, slope):
    if x.shape[0] == 0:
        return _empty_out(x, dw, pw, stride, padding, dilation)
    return cpu.inverted_residual(x, ex, dw, pw, exb, dwb, pwb, res, stride, padding, dilation, ex_act, mid_act, act,
                                 slope)


_IMPLS = {"reference": _reference, "cpu": _impl_cpu}


@torch.library.custom_op("sft::inverted_residual", mutates_args=())
def _op(input: torch.Tensor, ex_weight: torch.Tensor, dw_weight: torch.Tensor, pw_weight: torch.Tensor,
        ex_bias: Optional[torch.Tensor], dw_bias: Optional[torch.Tensor], pw_bias: Optional[torch.Tensor],
        residual: Optional[torch.Tensor], stride: list[int], padding: list[int], dilation: list[int],
        ex_activation: Optional[str], mid_activation: Optional[str], activation: Optional[str],
        negative_slope: float, backend: str) -> torch.Tensor:
    if input.shape[0] == 0:
        return _empty_out(input, dw_weight, pw_weight, stride, padding, dilation)
    return _IMPLS[backend](input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual, stride,
                           padding, dilation, ex_activation, mid_activation, activation, negative_slope)


@_op.register_fake
def _(input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual, stride, padding, dilation,
      ex_activation, mid_activation, activation, negative_slope, backend):
    return _empty_out(input, dw_weight, pw_weight, stride, padding, dilation)


def _empty_out(input, dw_weight, pw_weight, stride, padding, dilation):
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], dw_weight.shape[2], dw_weight.shape[3],
                                 stride, padding, dilation)
    out = input.new_empty((input.shape[0], pw_weight.shape[0], p, q))
    return out.contiguous(memory_format=checks.output_memory_format(input))


register_reference_autograd(_op, _reference, (0, 1, 2, 3, 4, 5, 6, 7))

OP = Op("inverted_residual", _op, _IMPLS)


def _check(input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual, stride, padding, dilation,
           ex_activation, mid_activation, activation, negative_slope) -> tuple:
    checks.tensor(input, "input", 4)
    checks.tensor(ex_weight, "ex_weight", 4, like=input)
    c = input.shape[1]
    if tuple(ex_weight.shape[1:]) != (c, 1, 1):
        raise ValueError(f"ex_weight must have shape (E, {c}, 1, 1) for an input of {c} channels, got "
                         f"{tuple(ex_weight.shape)}")
    e = ex_weight.shape[0]
    if ex_bias is not None:
        checks.tensor(ex_bias, "ex_bias", 1, like=input)
        if ex_bias.shape[0] != e:
            raise ValueError(f"ex_bias must have {e} elements, got {ex_bias.shape[0]}")
    # the depthwise conv and the projection read like sft.separable_conv2d's, on the E-channel expanded map
    expanded = input.new_empty((0, e, *input.shape[2:])) if input.dim() == 4 else input
    stride, padding, dilation, (p, q) = checks.conv_args(expanded, dw_weight, dw_bias, stride, padding, dilation, e)
    check_pointwise(input, dw_weight, pw_weight, pw_bias)
    checks.residual(residual, "residual", (input.shape[0], pw_weight.shape[0], p, q), input)
    for a in (ex_activation, mid_activation, activation):
        checks.activation(a)
    return stride, padding, dilation, ex_activation, mid_activation, activation, float(negative_slope)


def inverted_residual(input, ex_weight, dw_weight, pw_weight, ex_bias=None, dw_bias=None, pw_bias=None, stride=1,
                      padding=0, dilation=1, *, ex_activation: Optional[str] = None,
                      mid_activation: Optional[str] = None, activation: Optional[str] = None,
                      negative_slope: float = 0.01, residual: Optional[torch.Tensor] = None,
                      backend: Optional[str] = None) -> torch.Tensor:
    """``act(pw(mid_act(dw(ex_act(ex(input) + ex_bias)) + dw_bias)) + pw_bias) + residual``: ex_weight is E×C×1×1,
    dw_weight E·m×1×R×S (depthwise, groups = E, channel multiplier m), pw_weight K×E·m×1×1; stride, padding and
    dilation are the depthwise conv's. Same result as three F.conv2d calls; the cpu backend runs them in one pass
    without writing the expanded or the depthwise map. The output follows F.conv2d's layout rule (channels_last
    in, channels_last out)."""
    tensors = (input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual)
    sig = _signature(tensors, stride, padding, dilation, ex_activation, mid_activation, activation, negative_slope,
                     backend)
    return dispatch(OP, backend, tensors, sig,
                    lambda: _check(*tensors, stride, padding, dilation, ex_activation, mid_activation, activation,
                                   negative_slope), input)


def _signature(tensors, stride, padding, dilation, ex_activation, mid_activation, activation, negative_slope, backend):
    """The call's memo key for dispatch, or None where it cannot have one (as sft.separable_conv2d's)."""
    input = tensors[0]
    if not (type(input) is torch.Tensor and all(t is None or type(t) in PLAIN for t in tensors)
            and all(type(v) is int or (type(v) is tuple and len(v) == 2 and all(type(e) is int for e in v))
                    for v in (stride, padding, dilation))
            and all(type(a) in (str, type(None)) for a in (ex_activation, mid_activation, activation))
            and type(negative_slope) in (int, float) and (backend is None or type(backend) is str)
            and input.dim() == 4 and not torch.compiler.is_compiling()):
        return None
    return (tuple((t.shape, t.dtype, t.is_cpu) if t is not None else None for t in tensors), input.stride(),
            stride, padding, dilation, ex_activation, mid_activation, activation, float(negative_slope))


def bound(input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual, stride, padding, dilation,
          ex_activation, mid_activation, activation, negative_slope, backend):
    """fn(input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual) running this call as
    dispatch's memo would, once the call has run and its backend choice is final; else None (as
    ops.separable_conv2d.bound)."""
    tensors = (input, ex_weight, dw_weight, pw_weight, ex_bias, dw_bias, pw_bias, residual)
    sig = _signature(tensors, stride, padding, dilation, ex_activation, mid_activation, activation, negative_slope,
                     backend)
    hit = memo_entry(OP, backend, sig) if sig is not None else None
    if hit is None:
        return None
    fn, consts = hit[0], hit[1]
    return lambda *t: fn(*t, *consts)
