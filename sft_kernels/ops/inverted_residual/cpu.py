"""The `cpu` backend of sft.inverted_residual: the extension's fused kernel (csrc/cpu/separable/inverted_residual.cpp):
expanded rows in a per-thread window, the depthwise outputs of a tile of pixels in L1, both 1×1 convs on the GEMM
micro-kernel."""
from __future__ import annotations

import torch

from ...runtime import checks, registry


def inverted_residual(x, ex, dw, pw, exb, dwb, pwb, res, stride, padding, dilation, ex_act, mid_act, act, slope):
    registry.cpu_ext()  # registers torch.ops.sft_cpu
    A = checks.ACTIVATIONS.index
    y = torch.ops.sft_cpu.inverted_residual.default(x, ex, exb, A(ex_act), dw, dwb, pw, pwb, stride, padding,
                                                    dilation, A(mid_act), A(act), slope, res)
    # The kernel writes channels_last; the op's contract is F.conv2d's layout rule (NCHW in, NCHW out).
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()
