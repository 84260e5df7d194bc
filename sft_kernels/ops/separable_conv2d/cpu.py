"""The `cpu` backend of sft.separable_conv2d: the extension's fused kernel (csrc/cpu/separable/): depthwise outputs
of a tile of pixels computed into L1 and fed straight to the GEMM micro-kernel as the pointwise conv's A operand."""
from __future__ import annotations

import torch

from ...runtime import checks, registry, weight_pack


def separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1):
    """shuffle = r > 1: PixelShuffle(r) of the result, then the residual (shaped like the shuffled output); the
    kernel takes the pointwise weights in sub-pixel order (cached with them) and writes each output at its shuffled
    place."""
    registry.cpu_ext()  # registers torch.ops.sft_cpu
    if shuffle > 1:
        k, tag = pw.shape[0], f"cpu_separable_sub{shuffle}"
        pw, pwb = weight_pack.sub_pixel(pw, k, shuffle, tag), weight_pack.sub_pixel(pwb, k, shuffle, tag)
    y = torch.ops.sft_cpu.separable_conv2d.default(x, dw, dwb, pw, pwb, stride, padding, dilation,
                                                   checks.ACTIVATIONS.index(mid_act), checks.ACTIVATIONS.index(act),
                                                   slope, res, shuffle)
    # The kernel writes channels_last; the op's contract is F.conv2d's layout rule (NCHW in, NCHW out).
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()
