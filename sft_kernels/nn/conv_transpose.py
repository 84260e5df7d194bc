"""ConvTranspose2d as a sub-pixel conv: the transposed conv of stride s computed by one stride-1 conv with s² times
the output channels, its store doing the PixelShuffle, then a crop (what `convert_` puts in place of an
nn.ConvTranspose2d; dilation 1).

Per dimension, output row o of a transposed conv (kernel k, stride s, padding p) is, with f = o + p = q·s + φ,
    y[o] = Σ_m x[q − m] · w[φ + m·s],   m = 0 .. M − 1,  M = ceil(k / s)   (taps past k are zero),
so each phase φ is an ordinary M-tap correlation over x with the taps reversed, and the s phases of every output
channel are s adjacent channels of one conv that PixelShuffle(s) interleaves. Where k is a multiple of s the conv
does exactly the transposed conv's multiply-adds; otherwise up to (M·s / k)² as many (FSRCNN's 9×9, stride 2:
1.23×). PyTorch's CPU transposed conv ran FSRCNN's 56→3 9×9 stride-2 layer at 128² in ~22 ms on a Zen 4 core, this
form in ~7.5: the measured choice (runtime.autotune) picks per input shape.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..runtime import autotune, weight_pack
from ..runtime.layout import to_channels_last
from .conv import at_weight_precision, sharing_parameters


def subpixel_geometry(k: int, s: int, p: int, n_in: int, n_out: int) -> tuple:
    """(taps M, symmetric padding P of the stride-1 conv, offset of the output in the shuffled map) for one
    dimension: the conv's rows j hold q = j − P + M − 1, and every q the output needs, (o + p) // s for o in
    [0, n_out), lies within them."""
    m = math.ceil(k / s)
    q_max = (p + n_out - 1) // s
    pad = max(m - 1, q_max - n_in + 1)
    return m, pad, (pad - m + 1) * s + p


def subpixel_weight(w: torch.Tensor, groups: int, stride: tuple, taps: tuple) -> torch.Tensor:
    """The stride-1 conv weight [groups·Kg·sh·sw, Cg, Mh, Mw] for a transposed conv weight [C, Kg, kh, kw]: output
    channel (g, co, φh, φw) in PixelShuffle order, tap t holding w[φ + (M − 1 − t)·s] (zero past the kernel)."""
    c, kg, kh, kw = w.shape
    (sh, sw), (mh, mw) = stride, taps
    padded = w.new_zeros(c, kg, mh * sh, mw * sw)
    padded[:, :, :kh, :kw] = w
    # [C, Kg, M, s, M, s] indexed by (m, φ): tap index φ + m·s; reverse m to make a correlation
    v = padded.view(c, kg, mh, sh, mw, sw).flip(2, 4)
    v = v.view(groups, c // groups, kg, mh, sh, mw, sw).permute(0, 2, 4, 6, 1, 3, 5)  # [g, Kg, φh, φw, Cg, Mh, Mw]
    return v.reshape(groups * kg * sh * sw, c // groups, mh, mw).contiguous()


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` run as a sub-pixel conv on `sft.conv2d` (see the module docstring); same parameters and
    state_dict keys. Training (gradients wanted) and tracing run PyTorch's transposed conv. Output channels_last,
    as the converted convs'."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.dilation != (1, 1) or self.padding_mode != "zeros":
            raise ValueError("sft_kernels.nn.ConvTranspose2d runs dilation 1 and zero padding only")
        self.backend = backend
        self._sub = None

    @classmethod
    def from_conv(cls, conv: nn.ConvTranspose2d, backend: Optional[str] = None) -> "ConvTranspose2d":
        """A ConvTranspose2d sharing `conv`'s parameters (no copy)."""
        new = sharing_parameters(cls, conv, lambda k: False)
        new.backend, new._sub = backend, None
        return new

    def _subpixel_params(self, taps: tuple) -> tuple:
        """The stride-1 conv's weight and bias, made once per weight / bias version (so the cpu kernel's packed
        weight is cached with it)."""
        b = self.bias

        def made(w, b):
            return (subpixel_weight(w, self.groups, self.stride, taps),
                    None if b is None else b.repeat_interleave(self.stride[0] * self.stride[1]))

        if torch.compiler.is_compiling():  # made in the graph: torch.compile cannot compare data pointers
            return made(self.weight, b)
        key = (taps, self.weight._version, self.weight.data_ptr(), None if b is None else (b._version, b.data_ptr()))
        if self._sub is None or self._sub[0] != key:
            with torch.no_grad():
                self._sub = (key, *made(self.weight.detach(), None if b is None else b.detach()))
        return self._sub[1], self._sub[2]

    def forward(self, input: torch.Tensor, output_size: Optional[list] = None) -> torch.Tensor:
        training = torch.is_grad_enabled() and (input.requires_grad or (self.weight.requires_grad and self.training))
        if torch.jit.is_tracing() or training or input.dim() != 4:  # PyTorch's, with its autograd
            return super().forward(input, output_size)
        (input,) = at_weight_precision(self.weight, input)
        if self.backend is None and not torch.compiler.is_compiling() and autotune.enabled():
            key = ("conv_transpose2d", tuple(input.shape), input.dtype, input.device,
                   None if output_size is None else tuple(output_size), torch.get_num_threads(),
                   tuple(self.weight.shape), self.stride, self.padding, self.output_padding, self.groups,
                   self.bias is None)
            choice = autotune.pick(key, ["subpixel", "eager"], lambda c: self._run(c, input, output_size),
                                   device=input.device)
        else:
            choice = "subpixel"
        return self._run(choice, input, output_size)

    def _run(self, how: str, x: torch.Tensor, output_size) -> torch.Tensor:
        op = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        if how == "eager":
            x = to_channels_last(x)
            return F.conv_transpose2d(x, weight_pack.like_input(self.weight, x), self.bias, self.stride, self.padding,
                                      op, self.groups, self.dilation)
        n_in = x.shape[2:]
        n_out = [(n - 1) * s - 2 * p + k + e for n, s, p, k, e in zip(n_in, self.stride, self.padding,
                                                                     self.kernel_size, op)]
        geo = [subpixel_geometry(k, s, p, n, o) for k, s, p, n, o in zip(self.kernel_size, self.stride,
                                                                          self.padding, n_in, n_out)]
        w, b = self._subpixel_params((geo[0][0], geo[1][0]))
        sh, sw = self.stride
        x = to_channels_last(x)
        pad = (geo[0][1], geo[1][1])
        if sh == sw:
            y = ops.conv2d(x, w, b, 1, pad, 1, self.groups, pixel_shuffle=sh, backend=self.backend)
        else:
            z = ops.conv2d(x, w, b, 1, pad, 1, self.groups, backend=self.backend)
            n, c, h, wd = z.shape
            y = z.view(n, c // (sh * sw), sh, sw, h, wd).permute(0, 1, 4, 2, 5, 3).reshape(n, c // (sh * sw),
                                                                                            h * sh, wd * sw)
            y = y.contiguous(memory_format=torch.channels_last)
        oh, ow = geo[0][2], geo[1][2]
        if (oh, ow) == (0, 0) and tuple(y.shape[2:]) == tuple(n_out):
            return y
        return y[:, :, oh:oh + n_out[0], ow:ow + n_out[1]].contiguous(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", backend={self.backend!r}"
