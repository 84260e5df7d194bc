from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from ..runtime.layout import to_channels_last
from .conv import BoundCall, _fast_key, _no_grad_or_autocast, at_weight_precision
from .quantized import QuantConv2d, is_int8
from ..ops.conv2d.reference import epilogue
from ..ops.separable_conv2d import bound as separable_bound
from ..ops.separable_conv2d.reference import separable_conv2d as separable_reference


class SeparableConv2d(BoundCall):
    """A depthwise conv followed by a 1×1 conv, run as one `sft.separable_conv2d` (no depthwise map in memory).

    ``SeparableConv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, multiplier=1,
    bias=True, mid_activation=None, activation=None, negative_slope=0.01, backend=None)``: parameters ``dw`` (an
    nn.Conv2d with groups = in_channels) and ``pw`` (an nn.Conv2d 1×1), so its state_dict reads like the two-conv
    block it replaces. ``forward(x, residual=None)`` computes ``act(pw(mid_act(dw(x)))) + residual``; like the other
    converted convs it keeps activations channels_last. Training (gradients wanted) runs PyTorch's two convs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 multiplier: int = 1, bias: bool = True, mid_activation: Optional[str] = None,
                 activation: Optional[str] = None, negative_slope: float = 0.01, backend: Optional[str] = None):
        super().__init__()
        mid = in_channels * multiplier
        self.dw = nn.Conv2d(in_channels, mid, kernel_size, stride, padding, dilation, groups=in_channels, bias=bias)
        self.pw = nn.Conv2d(mid, out_channels, 1, bias=bias)
        self.mid_activation, self.activation = mid_activation, activation
        self.negative_slope, self.backend = negative_slope, backend

    @classmethod
    def from_convs(cls, dw: nn.Conv2d, pw: nn.Conv2d, mid_activation=None, activation=None, negative_slope=0.01,
                   backend=None) -> "SeparableConv2d":
        """A SeparableConv2d holding these two convs (their parameters, not copies)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.dw, new.pw = dw, pw
        new.mid_activation, new.activation = mid_activation, activation
        new.negative_slope, new.backend = negative_slope, backend
        return new

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        dw = self.dw
        if torch.jit.is_tracing():  # torch.jit.trace / the ONNX exporter: the two convs as modules, standard ops
            y = epilogue(dw(input), self.mid_activation, self.negative_slope)
            return epilogue(self.pw(y), self.activation, self.negative_slope, residual)
        if not (_plain(dw) and _plain(self.pw)):  # quantized (or being calibrated): the two convs one by one
            pw = self.pw
            if is_int8(dw) and is_int8(pw):  # uint8 from one to the other: requantized in the depthwise conv's store
                y = dw.run(input, self.mid_activation, self.negative_slope, out_scale=pw.input_scale,
                           out_zero_point=pw.input_zero_point)
            else:
                y = _run(dw, input, self.mid_activation, self.negative_slope)
            return _run(pw, y, self.activation, self.negative_slope, residual)
        pw = self.pw
        key = None
        if type(input) is torch.Tensor and input.is_cpu and not torch.compiler.is_compiling() \
                and _no_grad_or_autocast(input, pw.weight, residual):
            key = (_fast_key(input, residual), dw.stride, dw.padding, dw.dilation)
            fn = self.bound_for(key)
            if fn is not None:
                return fn(input, dw.weight, pw.weight, dw.bias, pw.bias, residual)
        given = (input, residual)
        input, residual = at_weight_precision(pw.weight, input, residual)
        input = to_channels_last(input)  # the converted model's layout policy
        if torch.is_grad_enabled() and (input.requires_grad or (self.training and pw.weight.requires_grad)):
            # training: PyTorch's two convs (autograd and autocast as usual; the fused op is for inference)
            return separable_reference(input, dw.weight, pw.weight, dw.bias, pw.bias, dw.stride,
                                       dw.padding, dw.dilation, self.mid_activation, self.activation,
                                       self.negative_slope, residual)
        y = ops.separable_conv2d(input, dw.weight, pw.weight, dw.bias, pw.bias, dw.stride, dw.padding, dw.dilation,
                                 mid_activation=self.mid_activation, activation=self.activation,
                                 negative_slope=self.negative_slope, residual=residual, backend=self.backend)
        # (the two convs' geometry is in the key; their tensors are passed per call)
        if key is not None and input is given[0] and residual is given[1]:  # no copies: the bound call takes them
            fn = separable_bound(input, dw.weight, pw.weight, dw.bias, pw.bias, residual, dw.stride, dw.padding,
                                 dw.dilation, self.mid_activation, self.activation, self.negative_slope,
                                 self.backend)
            self.keep_bound(key, fn)
        return y

    def extra_repr(self) -> str:
        return (f"mid_activation={self.mid_activation!r}, activation={self.activation!r}, "
                f"backend={self.backend!r}")


def _plain(m: nn.Module) -> bool:
    """A float conv the fused op can read the weights of directly (no module hooks to honour)."""
    return isinstance(m, nn.Conv2d) and not (m._forward_pre_hooks or m._forward_hooks)


def _run(m: nn.Module, x: torch.Tensor, activation, negative_slope, residual=None) -> torch.Tensor:
    """One conv of the pair as a module call, then the epilogue: through `run` where the module has one (quantized,
    sparse: their own fused epilogue; an int8 conv with its own uint8 output, quantize_'s chains), else the module
    (hooks fire) and the reference epilogue."""
    if isinstance(m, QuantConv2d):
        return m.run(x, activation, negative_slope, residual, out_scale=m.out_scale, out_zero_point=m.out_zero_point)
    if hasattr(m, "run"):
        return m.run(x, activation, negative_slope, residual)
    return epilogue(m(x), activation, negative_slope, residual)
