"""ONNX form of an int8 conv (QuantConv2d) and of an int8 Linear (QuantLinear): QuantizeLinear → DequantizeLinear on
the input (per-tensor uint8), the int8 weight as an initializer behind a per-channel DequantizeLinear, a float Conv
(Gemm), the bias, the fused activation. onnxruntime fuses the pattern into its integer ops where it can; any runtime
reads it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nn.conv import mode_padded
from ..conv2d.reference import epilogue


class _QDQ(nn.Module):
    """The quantization both stand-ins export: the dequantized weight with its per-channel scales, the bias, the
    input's scale and zero point."""

    def __init__(self, q):
        super().__init__()
        w = q.dequantized_weight()
        self.register_buffer("w", w)
        self.register_buffer("w_scale", q.weight_scale.clone())
        self.register_buffer("w_zp", torch.zeros(w.shape[0], dtype=torch.int32))
        self.register_buffer("bias", None if q.bias is None else q.bias.clone())
        self.x_scale, self.x_zp, self.act_bits = q.input_scale, q.input_zero_point, q.act_bits

    def fake_quantized(self, x):
        """(x, w) as the int8 kernel sees them: x rounded to its uint8 grid (int8 activations only), w to int8."""
        if self.act_bits == 8:
            x = torch.fake_quantize_per_tensor_affine(x, self.x_scale, self.x_zp, 0, 255)
        return x, torch.fake_quantize_per_channel_affine(self.w, self.w_scale, self.w_zp, 0, -128, 127)


class QDQConv2d(_QDQ):
    """Export-only stand-in for sft_kernels.nn.QuantConv2d (same numbers, standard ops)."""

    def __init__(self, q):
        super().__init__(q)
        self.stride, self.padding, self.dilation, self.groups = q.stride, q.padding, q.dilation, q.groups
        self.activation, self.negative_slope = q.activation, q.negative_slope
        self.pre_pad, self.padding_mode = q.pre_pad, q.padding_mode
        # a uint8 output (quantize_'s chains) on its grid, as the store requantizes it: where a chain dropped the
        # ReLU after a residual add, that grid's clamp at zero point 0 is the ReLU
        self.out_scale, self.out_zp = q.out_scale, q.out_zero_point

    def forward(self, x, residual=None):
        if self.pre_pad is not None:  # before the rounding, as the kernel pads its input (zeros stay exact)
            x = mode_padded(x, self.pre_pad, self.padding_mode)
        x, w = self.fake_quantized(x)
        y = F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        y = epilogue(y, self.activation, self.negative_slope, residual)
        if self.out_scale:
            y = torch.fake_quantize_per_tensor_affine(y, self.out_scale, self.out_zp, 0, 255)
        return y


class QDQLinear(_QDQ):
    """Export-only stand-in for sft_kernels.nn.QuantLinear (a float Linear, exported as Gemm)."""

    def __init__(self, q):
        super().__init__(q)
        self.activation, self.negative_slope = q.activation, q.negative_slope

    def forward(self, x):
        x, w = self.fake_quantized(x)
        return epilogue(F.linear(x, w, self.bias), self.activation, self.negative_slope)
