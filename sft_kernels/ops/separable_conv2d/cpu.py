"""The `cpu` backend of sft.separable_conv2d: the extension's fused kernel (csrc/cpu/separable/): depthwise outputs
of a tile of pixels computed into L1 and fed straight to the GEMM micro-kernel as the pointwise conv's A operand."""
from __future__ import annotations

import torch

from ...runtime import checks, registry


def separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope):
    registry.cpu_ext()  # registers torch.ops.sft_cpu
    y = torch.ops.sft_cpu.separable_conv2d.default(x, dw, dwb, pw, pwb, stride, padding, dilation,
                                                   checks.ACTIVATIONS.index(mid_act), checks.ACTIVATIONS.index(act),
                                                   slope, res)
    # The kernel writes channels_last; the op's contract is F.conv2d's layout rule (NCHW in, NCHW out).
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()
