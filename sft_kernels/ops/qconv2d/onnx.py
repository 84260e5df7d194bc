"""ONNX form of an int8 conv (QuantConv2d; QDQLinear: the same for QuantLinear): QuantizeLinear → DequantizeLinear on the input (per-tensor uint8), the
int8 weight as an initializer behind a per-channel DequantizeLinear, a float Conv, the bias, the fused activation.
onnxruntime fuses the pattern into its integer conv where it can; any runtime reads it."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..conv2d.reference import epilogue


class QDQConv2d(nn.Module):
    """Export-only stand-in for sft_kernels.nn.QuantConv2d (same numbers, standard ops)."""

    def __init__(self, q):
        super().__init__()
        self.register_buffer("w", q.dequantized_weight())
        self.register_buffer("w_scale", q.weight_scale.clone())
        self.register_buffer("w_zp", torch.zeros(q.out_channels, dtype=torch.int32))
        self.register_buffer("bias", None if q.bias is None else q.bias.clone())
        self.stride, self.padding, self.dilation, self.groups = q.stride, q.padding, q.dilation, q.groups
        self.x_scale, self.x_zp, self.act_bits = q.input_scale, q.input_zero_point, q.act_bits
        self.activation, self.negative_slope = q.activation, q.negative_slope

    def forward(self, x, residual=None):
        if self.act_bits == 8:
            x = torch.fake_quantize_per_tensor_affine(x, self.x_scale, self.x_zp, 0, 255)
        w = torch.fake_quantize_per_channel_affine(self.w, self.w_scale, self.w_zp, 0, -128, 127)
        y = F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return epilogue(y, self.activation, self.negative_slope, residual)


class QDQLinear(nn.Module):
    """Export-only stand-in for sft_kernels.nn.QuantLinear: the same QDQ pattern around a float Linear (Gemm)."""

    def __init__(self, q):
        super().__init__()
        self.register_buffer("w", q.dequantized_weight())
        self.register_buffer("w_scale", q.weight_scale.clone())
        self.register_buffer("w_zp", torch.zeros(q.out_features, dtype=torch.int32))
        self.register_buffer("bias", None if q.bias is None else q.bias.clone())
        self.x_scale, self.x_zp, self.act_bits = q.input_scale, q.input_zero_point, q.act_bits

    def forward(self, x):
        if self.act_bits == 8:
            x = torch.fake_quantize_per_tensor_affine(x, self.x_scale, self.x_zp, 0, 255)
        w = torch.fake_quantize_per_channel_affine(self.w, self.w_scale, self.w_zp, 0, -128, 127)
        return F.linear(x, w, self.bias)
