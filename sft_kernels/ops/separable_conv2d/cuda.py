"""The `cuda` backend of sft.separable_conv2d: lays tensors out for the fused CUDA kernel
(csrc/cuda/separable_conv2d/separable_conv2d.cu, bound as `torch.ops.sft_cuda.separable_conv2d_nhwc`) and calls it.

The kernel wants an NHWC input (a channels_last input already is one: no copy), the depthwise weight as CM × R × S
and the pointwise weight as K × CM (views of PyTorch's layouts), and returns NHWC, handed back as a channels_last
tensor (or NCHW for an NCHW input, F.conv2d's layout rule); with a PixelShuffle the kernel writes the shuffled output
(and reads the residual, shaped like it) from its epilogue.
"""
from __future__ import annotations

from ...runtime import checks
from ..conv2d.cuda import cuda_op


def separable_conv2d(x, dw, pw, dwb, pwb, res, stride, padding, dilation, mid_act, act, slope, shuffle=1,
                     kernel=None):
    """`kernel` stands in for the extension in tests (no GPU)."""
    kernel = kernel or cuda_op("separable_conv2d_nhwc")
    cm, _, r, s = dw.shape
    k = pw.shape[0]
    xh = x.permute(0, 2, 3, 1).contiguous()
    resh = None if res is None else res.permute(0, 2, 3, 1).contiguous()
    y = kernel(xh, dw.reshape(cm, r, s).contiguous(), None if dwb is None else dwb.contiguous(),
               pw.reshape(k, cm).contiguous(), None if pwb is None else pwb.contiguous(), list(stride),
               list(padding), list(dilation), checks.ACTIVATIONS.index(mid_act), checks.ACTIVATIONS.index(act),
               float(slope), resh, shuffle)
    return y.permute(0, 3, 1, 2).contiguous(memory_format=checks.output_memory_format(x))
