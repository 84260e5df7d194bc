"""sft.separable_conv2d: depthwise conv (groups = channels) then 1×1 conv, with optional activations."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, reference
from . import _checks
from ._autograd import register_reference_autograd


def _reference(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope, backend=None):
    return reference.separable_conv2d(x, dw, pw, dwb, pwb, stride, padding, dilation, mid_act, act, slope)


_IMPLS = {"reference": lambda *a: _reference(*a).contiguous(memory_format=_checks.output_memory_format(a[0]))}


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
    p, q = _checks.conv_output_hw(input.shape[2], input.shape[3], dw_weight.shape[2], dw_weight.shape[3],
                                  stride, padding, dilation)
    out = input.new_empty((input.shape[0], pw_weight.shape[0], p, q))
    return out.contiguous(memory_format=_checks.output_memory_format(input))


register_reference_autograd(_separable_op, _reference, (0, 1, 2, 3, 4))


def separable_conv2d(input, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=1, padding=0, dilation=1,
                     *, mid_activation: Optional[str] = None, activation: Optional[str] = None,
                     negative_slope: float = 0.01, backend: Optional[str] = None) -> torch.Tensor:
    """``pw(act_mid(dw(input)))`` then ``activation``: dw_weight is C×1×R×S (depthwise, groups = C),
    pw_weight is K×C×1×1. Same result as two F.conv2d calls."""
    stride, padding, dilation, _ = _checks.conv_args(input, dw_weight, dw_bias, stride, padding, dilation,
                                                     input.shape[1] if input.dim() == 4 else 1)
    _checks.tensor(pw_weight, "pw_weight", 4, like=input)
    if tuple(pw_weight.shape[1:]) != (input.shape[1], 1, 1):
        raise ValueError(f"pw_weight must have shape (K, {input.shape[1]}, 1, 1), got {tuple(pw_weight.shape)}")
    if pw_bias is not None:
        _checks.tensor(pw_bias, "pw_bias", 1, like=input)
        if pw_bias.shape[0] != pw_weight.shape[0]:
            raise ValueError(f"pw_bias must have {pw_weight.shape[0]} elements, got {pw_bias.shape[0]}")
    _checks.activation(mid_activation)
    _checks.activation(activation)
    name = backends.resolve_for(backend, "separable_conv2d", input)
    return _separable_op(input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation,
                         mid_activation, activation, float(negative_slope), name)
