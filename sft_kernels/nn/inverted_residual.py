from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from ..ops.inverted_residual import bound as ir_bound
from ..ops.conv2d.reference import epilogue
from ..ops.inverted_residual.reference import inverted_residual as ir_reference
from ..runtime.layout import to_channels_last
from .conv import _fast_key, _no_grad_or_autocast, at_weight_precision
from .quantized import is_int8
from .separable import SeparableConv2d, _plain, _run


class InvertedResidual(SeparableConv2d):
    """MobileNetV2's inverted residual: a 1×1 expand conv, a depthwise conv and a 1×1 projection, run as one
    `sft.inverted_residual` (neither the expanded nor the depthwise map in memory).

    A SeparableConv2d (``dw``, ``pw``) with a third conv ``ex`` (an nn.Conv2d 1×1, stride 1, ungrouped) in front and
    its activation ``ex_activation``; `fuse_for_inference` builds it from a converted model's expand conv and the
    fused separable conv reading its output. ``forward(x, residual=None)`` computes
    ``act(pw(mid_act(dw(ex_act(ex(x)))))) + residual``. Training (gradients wanted) runs PyTorch's three convs;
    quantized convs (quantize_) run one by one, the expand conv handing its uint8 map straight to an int8 depthwise
    conv.
    """

    @classmethod
    def from_convs(cls, ex: nn.Conv2d, sep: SeparableConv2d, ex_activation: Optional[str] = None,
                   backend=None) -> "InvertedResidual":
        """An InvertedResidual holding ex and the separable conv's two convs (their parameters, not copies)."""
        new = super().from_convs(sep.dw, sep.pw, sep.mid_activation, sep.activation, sep.negative_slope, backend)
        new.ex, new.ex_activation = ex, ex_activation
        return new

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        ex, dw, pw = self.ex, self.dw, self.pw
        if torch.jit.is_tracing():  # torch.jit.trace / the ONNX exporter: the convs as modules, standard ops
            return super().forward(epilogue(ex(input), self.ex_activation, self.negative_slope), residual)
        if not (_plain(ex) and _plain(dw) and _plain(pw)):
            # quantized (or being calibrated): the expand conv, then the separable pair, one by one
            if is_int8(ex) and is_int8(dw):  # uint8 from one to the other: requantized in the expand conv's store
                y = ex.run(input, self.ex_activation, self.negative_slope, out_scale=dw.input_scale,
                           out_zero_point=dw.input_zero_point)
            else:
                y = _run(ex, input, self.ex_activation, self.negative_slope)
            return super().forward(y, residual)
        key = None
        if type(input) is torch.Tensor and input.is_cpu and not torch.compiler.is_compiling() \
                and _no_grad_or_autocast(input, pw.weight, residual):
            key = (_fast_key(input, residual), dw.stride, dw.padding, dw.dilation)
            fn = self.bound_for(key)
            if fn is not None:
                return fn(input, ex.weight, dw.weight, pw.weight, ex.bias, dw.bias, pw.bias, residual)
        given = (input, residual)
        input, residual = at_weight_precision(pw.weight, input, residual)
        input = to_channels_last(input)  # the converted model's layout policy
        args = (ex.weight, dw.weight, pw.weight, ex.bias, dw.bias, pw.bias, dw.stride, dw.padding, dw.dilation)
        if torch.is_grad_enabled() and (input.requires_grad or (self.training and pw.weight.requires_grad)):
            return ir_reference(input, *args, self.ex_activation, self.mid_activation, self.activation,
                                self.negative_slope, residual)
        y = ops.inverted_residual(input, *args, ex_activation=self.ex_activation,
                                  mid_activation=self.mid_activation, activation=self.activation,
                                  negative_slope=self.negative_slope, residual=residual, backend=self.backend)
        if key is not None and input is given[0] and residual is given[1]:  # no copies: the bound call takes them
            fn = ir_bound(input, ex.weight, dw.weight, pw.weight, ex.bias, dw.bias, pw.bias, residual, dw.stride,
                          dw.padding, dw.dilation, self.ex_activation, self.mid_activation, self.activation,
                          self.negative_slope, self.backend)
            self.keep_bound(key, fn)
        return y

    def extra_repr(self) -> str:
        return f"ex_activation={self.ex_activation!r}, " + super().extra_repr()
