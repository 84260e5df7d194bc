"""sft.separable_conv2d: depthwise conv (groups = channels) then 1×1 conv, with optional activations.

The op (schema `sft::separable_conv2d`, fake kernel, reference autograd, registry entry) and its public function;
`reference.py` is the two-conv definition (today's only backend).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import Op, dispatch
from . import reference as ref

registry.register_op("separable_conv2d", {"reference": registry.FLOATS})


def _reference(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope, backend=None):
    return ref.separable_conv2d(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope)


_IMPLS = {"reference": lambda *a: _reference(*a).contiguous(memory_format=checks.output_memory_format(a[0]))}


@torch.library.custom_op("sft::separable_conv2d", mutates_args=())
def _separable_op(input: torch.Tensor, dw_weight: torch.Tensor, pw_weight: torch.Tensor,
                  dw_bias: Optional[torch.Tensor], pw_bias: Optional[torch.Tensor], stride: list[int],
                  padding: list[int], dilation: list[int], mid_activation: Optional[str],
                  activation: Optional[str], negative_slope: float, backend: str) -> torch.Tensor:
    return _IMPLS[backend](input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation,
                           mid_activation, activation, negative_slope)


@_separable_op.register_fake
def _(input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, mid_activation, activation,
      negative_slope, backend):
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], dw_weight.shape[2], dw_weight.shape[3],
                                 stride, padding, dilation)
    out = input.new_empty((input.shape[0], pw_weight.shape[0], p, q))
    return out.contiguous(memory_format=checks.output_memory_format(input))


register_reference_autograd(_separable_op, _reference, (0, 1, 2, 3, 4))

OP = Op("separable_conv2d", _separable_op, _IMPLS)


def _check(input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, mid_activation, activation,
           negative_slope) -> tuple:
    stride, padding, dilation, _ = checks.conv_args(input, dw_weight, dw_bias, stride, padding, dilation,
                                                    input.shape[1] if input.dim() == 4 else 1)
    checks.tensor(pw_weight, "pw_weight", 4, like=input)
    if tuple(pw_weight.shape[1:]) != (input.shape[1], 1, 1):
        raise ValueError(f"pw_weight must have shape (K, {input.shape[1]}, 1, 1), got {tuple(pw_weight.shape)}")
    if pw_bias is not None:
        checks.tensor(pw_bias, "pw_bias", 1, like=input)
        if pw_bias.shape[0] != pw_weight.shape[0]:
            raise ValueError(f"pw_bias must have {pw_weight.shape[0]} elements, got {pw_bias.shape[0]}")
    checks.activation(mid_activation)
    checks.activation(activation)
    return stride, padding, dilation, mid_activation, activation, float(negative_slope)


def separable_conv2d(input, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=1, padding=0, dilation=1,
                     *, mid_activation: Optional[str] = None, activation: Optional[str] = None,
                     negative_slope: float = 0.01, backend: Optional[str] = None) -> torch.Tensor:
    """``pw(act_mid(dw(input)))`` then ``activation``: dw_weight is C×1×R×S (depthwise, groups = C),
    pw_weight is K×C×1×1. Same result as two F.conv2d calls."""
    return dispatch(OP, backend, (input, dw_weight, pw_weight, dw_bias, pw_bias), None,
                    lambda: _check(input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation,
                                   mid_activation, activation, negative_slope), input)
