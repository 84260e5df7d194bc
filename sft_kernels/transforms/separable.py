"""convert_'s separable pass: in an nn.Sequential, a depthwise conv, an optional ReLU / LeakyReLU / ReLU6 and a 1×1 conv
run as one `sft.separable_conv2d` (the fused cpu kernel writes no depthwise map).

The state_dict keeps its keys: the depthwise conv's slot becomes a conv module (same parameters) that runs the
fused op, the activation's slot an identity, and the 1×1 conv's slot a module holding its parameters that passes
its input through. revert_ puts the three back.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from ..runtime.layout import to_channels_last
from ..nn import Conv2d
from ..nn.conv import activation_of, at_weight_precision
from ..nn.folded_conv import FusedAway
from .report import Report


class SeparableHead(Conv2d):
    """The depthwise conv of a fused pair: runs depthwise, activation and the (unregistered) 1×1 conv in one op."""

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        input, residual = at_weight_precision(self.weight, input, residual)
        input = to_channels_last(input)
        pw = self.__dict__["_sft_pw"]
        return ops.separable_conv2d(input, self.weight, pw.weight, self.bias, pw.bias, self.stride, self.padding,
                                    self.dilation, mid_activation=self._sft_mid, negative_slope=self._sft_slope,
                                    residual=residual, backend=self.backend)


def _is_depthwise(m) -> bool:
    return (isinstance(m, Conv2d) and type(m) is Conv2d and m.groups == m.in_channels > 1 and m.activation is None
            and not isinstance(m.padding, str) and m.padding_mode == "zeros")


def _is_pointwise(m, channels: int) -> bool:
    return (isinstance(m, Conv2d) and type(m) is Conv2d and m.kernel_size == (1, 1) and m.stride == (1, 1)
            and m.padding == (0, 0) and m.groups == 1 and m.in_channels == channels and m.activation is None)


def fuse_separable(model: nn.Module, report: Report) -> None:
    """Fuse every (converted) depthwise conv [+ ReLU / LeakyReLU / ReLU6] + 1×1 conv run of an nn.Sequential, in
    place."""
    for name, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        i = 0
        while i < len(keys) - 1:
            dw = seq._modules[keys[i]]
            act = activation_of(seq._modules[keys[i + 1]])
            j = i + 2 if act else i + 1
            if j < len(keys) and _is_depthwise(dw) and _is_pointwise(seq._modules[keys[j]], dw.out_channels):
                pw = seq._modules[keys[j]]
                head = SeparableHead.from_conv(dw, dw.backend)
                head._sft_original_class = dw._sft_original_class
                head.__dict__["_sft_pw"] = pw
                head._sft_mid, head._sft_slope = act if act else (None, 0.01)
                setattr(seq, keys[i], head)
                if act:
                    setattr(seq, keys[i + 1], FusedAway(seq._modules[keys[i + 1]]))
                setattr(seq, keys[j], FusedAway(pw))
                where = f"{name}.{keys[i]}" if name else keys[i]
                report.add(where, "fused", f"depthwise {dw.kernel_size[0]}x{dw.kernel_size[1]} + "
                           f"{'' if not act else act[0] + ' + '}1x1 -> one separable conv")
                i = j + 1
            else:
                i += 1


def unfuse_separable_(model: nn.Module) -> list:
    """Undo fuse_separable in place: each SeparableHead becomes a converted depthwise Conv2d again and the modules
    its pair had taken over come back (for transforms that swap convs one by one, such as quantize_). Returns the
    heads' names."""
    done = []
    for name, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        for key, m in list(seq._modules.items()):
            if isinstance(m, FusedAway):
                setattr(seq, key, m.__dict__["_sft_replaced"])
            elif isinstance(m, SeparableHead):
                conv = Conv2d.from_conv(m, m.backend)
                conv._sft_original_class = m._sft_original_class
                setattr(seq, key, conv)
                done.append(f"{name}.{key}" if name else key)
    return done
