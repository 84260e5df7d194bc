"""nn.MaxPool2d that also takes uint8 maps: quantize_ puts it where an int8 conv's uint8 output (a chain) reaches a
max pool on its way to other int8 convs (ResNet's stem). The max commutes with the uint8 grid, so the pooled bytes
are the pooled values on the same grid. ATen's own max pool refuses channels_last uint8 maps on the CPU, so they go
through PyTorch's quantized max pool (the bytes wrapped as a quint8 tensor, no copy: 0.14 ms for 64 channels at 112²
where the float pool took 0.42), or through float32 where that is unavailable (exact: uint8 values are floats)."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

# PyTorch deprecates creating quantized tensors; this wrap is only a view for its max pool (the fallback stays)
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*", category=UserWarning,
                        module=__name__)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d (same arguments and results) whose input may also be a uint8 map; returns uint8 for it."""

    @classmethod
    def from_pool(cls, pool: nn.MaxPool2d) -> "MaxPool2d":
        new = cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.return_indices, pool.ceil_mode)
        return new.train(pool.training)

    def forward(self, input: torch.Tensor):
        if input.dtype != torch.uint8 or self.return_indices:
            return super().forward(input)
        args = (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        try:
            return F.max_pool2d(torch._make_per_tensor_quantized_tensor(input, 1.0, 0), *args).int_repr()
        except (AttributeError, RuntimeError, NotImplementedError):  # no quantized CPU kernels in this build
            return F.max_pool2d(input.float(), *args).to(torch.uint8)
