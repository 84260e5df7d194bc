"""int8 nn.ConvTranspose2d (what quantize_ puts in place of a transposed conv): its sub-pixel form
(nn/conv_transpose.py: one stride-1 conv with s² times the output channels, then PixelShuffle(s) and a crop) as a
QuantConv2d whose store writes the shuffled outputs, so an SR network's or a UNet decoder's upsampling runs on the
int8 kernels too. The sub-pixel weight is quantized per output channel of that conv (per phase of each transposed
conv channel). Equal strides only (PixelShuffle); the rest stay float."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .conv_transpose import subpixel_geometry, subpixel_weight
from .quantized import QuantConv2d


def transpose_fits(conv: nn.ConvTranspose2d) -> Optional[str]:
    """None if `conv` has an int8 form, else why it stays float."""
    if conv.stride[0] != conv.stride[1]:
        return "transposed conv with unequal strides: kept float (int8 needs one PixelShuffle factor)"
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return "transposed conv with dilation or a padding mode: kept float"
    return None


class QuantConvTranspose2d(nn.Module):
    """int8 transposed conv; build with `from_float(conv, input_scale, input_zero_point)`. `q` is the sub-pixel
    QuantConv2d (its input grid, weights and scales); forward(x, output_size=None) as nn.ConvTranspose2d's."""

    channels_last_output = True  # as the int8 conv's (caller_layout)

    def __init__(self, q: QuantConv2d, kernel_size: tuple, stride: int, padding: tuple, output_padding: tuple,
                 in_channels: int, out_channels: int, groups: int = 1):
        super().__init__()
        self.q = q
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), int(stride), tuple(padding)
        self.output_padding, self.groups = tuple(output_padding), groups
        self.in_channels, self.out_channels = in_channels, out_channels

    @classmethod
    def from_float(cls, conv: nn.ConvTranspose2d, input_scale: float = 1.0, input_zero_point: int = 0,
                   act_bits: int = 8, backend: Optional[str] = None) -> "QuantConvTranspose2d":
        why = transpose_fits(conv)
        if why:
            raise ValueError(f"QuantConvTranspose2d: {why}")
        s = conv.stride[0]
        taps = tuple(-(-k // s) for k in conv.kernel_size)
        with torch.no_grad():
            w = subpixel_weight(conv.weight.detach().float(), conv.groups, conv.stride, taps)
            sub = nn.Conv2d(w.shape[1] * conv.groups, w.shape[0], taps, groups=conv.groups,
                            bias=conv.bias is not None).to(w.device)
            sub.weight.copy_(w)
            if conv.bias is not None:
                sub.bias.copy_(conv.bias.detach().float().repeat_interleave(s * s))
        q = QuantConv2d.from_float(sub, input_scale, input_zero_point, act_bits, backend)
        return cls(q, conv.kernel_size, s, conv.padding, conv.output_padding, conv.in_channels, conv.out_channels,
                   conv.groups)

    # what QuantConv2d exposes, for quantize_'s report
    input_scale = property(lambda self: self.q.input_scale)
    input_zero_point = property(lambda self: self.q.input_zero_point)
    weight_scale = property(lambda self: self.q.weight_scale)
    act_bits = property(lambda self: self.q.act_bits)

    def _geometry(self, x: torch.Tensor, output_size: Optional[List[int]]) -> tuple:
        """(sub-pixel conv padding, crop offsets, output size) of input x, as nn.ConvTranspose2d sizes it."""
        n_in, s = x.shape[2:], self.stride
        default = [(n - 1) * s - 2 * p + k for n, p, k in zip(n_in, self.padding, self.kernel_size)]
        if output_size is None:
            extra = self.output_padding
        else:
            want = list(output_size)[-2:]
            extra = [o - d for o, d in zip(want, default)]
            if any(e < 0 or e >= s for e in extra):
                raise ValueError(f"output_size {want} is not reachable from input size {list(n_in)} (between "
                                 f"{default} and {[d + s - 1 for d in default]})")
        n_out = [d + e for d, e in zip(default, extra)]
        geo = [subpixel_geometry(k, s, p, n, o) for k, p, n, o in zip(self.kernel_size, self.padding, n_in, n_out)]
        return (geo[0][1], geo[1][1]), (geo[0][2], geo[1][2]), n_out

    def forward(self, input: torch.Tensor, output_size: Optional[List[int]] = None) -> torch.Tensor:
        if input.dim() != 4 or input.shape[1] != self.in_channels:
            raise ValueError(f"QuantConvTranspose2d expects [N, {self.in_channels}, H, W], got {tuple(input.shape)}")
        pad, (oh, ow), n_out = self._geometry(input, output_size)
        if self.q.padding != pad:
            self.q.padding = pad
        y = self.q.run(input, None, 0.01, None, None, 0.0, 0, pixel_shuffle=self.stride)
        if (oh, ow) == (0, 0) and list(y.shape[2:]) == n_out:
            return y
        return y[:, :, oh:oh + n_out[0], ow:ow + n_out[1]].contiguous(memory_format=torch.channels_last)

    def dequantized_transpose_weight(self) -> torch.Tensor:
        """The transposed conv's weight [C, K/groups, kh, kw] as the int8 sub-pixel weight holds it (dequantized):
        every element of that weight is one element of this one, or padding past the kernel."""
        c, kg = self.in_channels, self.out_channels // self.groups
        shape, s = (c, kg, *self.kernel_size), self.stride
        taps = tuple(-(-k // s) for k in self.kernel_size)
        where = subpixel_weight(torch.arange(1, c * kg * shape[2] * shape[3] + 1, dtype=torch.float64).view(shape),
                                self.groups, (s, s), taps).long() - 1  # -1: padding
        sub = self.q.dequantized_weight().double().reshape(-1)
        w = torch.zeros(c * kg * shape[2] * shape[3], dtype=torch.float64, device=sub.device)
        w[where.reshape(-1)[where.reshape(-1) >= 0]] = sub[where.reshape(-1) >= 0]
        return w.view(shape).float()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}, sub-pixel int8 conv")


class QDQConvTranspose2d(nn.Module):
    """Export-only stand-in for QuantConvTranspose2d (same numbers, standard ops): the input rounded to its uint8
    grid, then ConvTranspose with the dequantized int8 weight (ops/qconv2d/onnx.py does the same for QuantConv2d)."""

    def __init__(self, m: QuantConvTranspose2d):
        super().__init__()
        self.register_buffer("w", m.dequantized_transpose_weight())
        self.register_buffer("bias", None if m.q.bias is None else m.q.bias[::m.stride ** 2].clone())
        self.x_scale, self.x_zp, self.act_bits = m.input_scale, m.input_zero_point, m.act_bits
        self.stride, self.padding, self.output_padding, self.groups = m.stride, m.padding, m.output_padding, m.groups

    def forward(self, x):
        if self.act_bits == 8:
            x = torch.fake_quantize_per_tensor_affine(x, self.x_scale, self.x_zp, 0, 255)
        return F.conv_transpose2d(x, self.w, self.bias, self.stride, self.padding, self.output_padding, self.groups)
