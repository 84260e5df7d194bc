"""SparseConv2d: a pruned conv (what `sft_kernels.prune_` puts in place of an nn.Conv2d).

It holds the conv's weight with its pruned entries zeroed and a boolean `mask` buffer (same state_dict keys as
nn.Conv2d plus `mask`). Training runs the dense conv of weight·mask, so pruned weights get no gradient and stay
zero; inference runs `sft.sparse_conv2d` (only the nonzeros) where the sparse kernel beats the dense paths on this
conv, and sft.conv2d (direct or Winograd) where it does not, by `sparse_pays` below (cpu tensors; on a GPU the
dense path, until the GPU sparse kernels are measured).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import ops
from ..runtime.layout import to_channels_last
from ..ops.conv2d.reference import epilogue
from .conv import Conv2d, at_weight_precision


def sparse_pays(density: float, block: int, kernel_size: tuple, stride: tuple, groups: int,
                in_channels: int, out_channels: int) -> bool:
    """Whether the sparse kernel beats our dense conv at this density (fraction of weights kept) for this shape.

    The crossovers, measured side by side (benchmarks/ops/bench_sparse_conv2d.py, 1 and 2 threads; AMD Zen 4,
    results/2026-12-08s39_zen4-2c): against Winograd (3×3, stride 1, ungrouped, >= 16 channels, dilated too: what
    the dense path runs there) unstructured weights break even near 20 % kept (trunk 64→64: 0.85-0.91x at 30 %,
    0.97-1.01x at 20 %, 1.42-1.48x at 10 %; 128→128 at 64²: 0.90-0.96x / 1.00-1.09x / 1.60-1.78x) and blocks of 4
    near 30 % (0.87-1.00x at 30 %, 1.19-1.42x at 20 %); against the direct conv (1×1 and other shapes, results/
    2026-12-07s38_zen4-2c) unstructured near 40 % alone (cond 128→128 1×1: 0.88x at 50 %, 1.14x at 30 %; sft1
    32→64: 0.97x / 1.17x) and blocks near 70 % (1.16-1.34x at 50 %). In a model a sparse conv also gives up the
    fusions the dense one gets (SFTNet's scale / shift convs run inside its fused SFT layers): SFTNet pruned to 30 %
    kept ran 0.88-0.90x its dense model with its 1×1 convs sparse at <= 30 % kept (Zen 4,
    results/2026-12-07s38_zen4-2c/pruned_sftnet.txt), so those stay at 20 %; the Winograd-path limits sit a little
    under break-even for the same reason. With the flat 1×1 tiles (results/2026-12-08s40_zen4-2c/
    sparse_1x1_crossover_*.txt) 1×1 convs alone pay from 60-70 % sparsity on most of SFTNet's and ResNet-50's shapes,
    but a pruned ResNet-50 at 70 % ran 0.81-1.05x its dense twin with them sparse at 30 % kept against 0.88-0.99x
    with the 20 % limit (the packed weights arrive from memory in a model): 20 % stays."""
    wino = (tuple(kernel_size) == (3, 3) and tuple(stride) == (1, 1) and groups == 1 and in_channels >= 16
            and out_channels >= 16)
    if groups == in_channels and in_channels > 1:  # depthwise: its own dense path has nothing left to skip
        return False
    if wino:
        limit = 0.25 if block == 4 else 0.16
    else:
        limit = 0.5 if block == 4 else 0.2
    # 1 % slack: a layer pruned to exactly the limit is at it whichever way its weight count rounded (80 % of 3264
    # weights keeps 653 of them, 20.006 %)
    return density <= limit * 1.01


class SparseConv2d(Conv2d):
    """A pruned conv (see the module docstring). Build with `from_conv(conv, mask)`."""

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, mask: torch.Tensor, backend: Optional[str] = None,
                  block: Optional[int] = None) -> "SparseConv2d":
        """A SparseConv2d sharing `conv`'s parameters, their pruned entries zeroed in place."""
        if tuple(mask.shape) != tuple(conv.weight.shape):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the weight {tuple(conv.weight.shape)}")
        new = super().from_conv(conv, backend)
        for attr in ("activation", "negative_slope", "algorithm"):  # an sft Conv2d's fused epilogue stays
            if hasattr(conv, attr):
                setattr(new, attr, getattr(conv, attr))
        if backend is None:
            new.backend = getattr(conv, "backend", None)
        new.register_buffer("mask", mask.to(torch.bool).to(conv.weight.device))
        new.block = block
        new._masked_version = None
        new.apply_mask_()
        return new

    def apply_mask_(self) -> None:
        """Zero the pruned entries of the weight in place (after an optimizer step that moved them, e.g. with
        weight decay)."""
        with torch.no_grad():
            self.weight.mul_(self.mask)
        self._masked_version = (self.weight._version, self.mask._version)
        self._density = float(self.mask.sum()) / max(1, self.mask.numel())

    @property
    def density(self) -> float:
        """The fraction of the weights kept."""
        if not torch.compiler.is_compiling() and (self.weight._version, self.mask._version) != self._masked_version:
            self.apply_mask_()
        return self._density

    def _sparse(self) -> bool:
        return sparse_pays(self.density, 4 if self.block == 4 else 1, self.kernel_size, self.stride, self.groups,
                           self.in_channels, self.out_channels)

    def run(self, x: torch.Tensor, activation: Optional[str] = None, negative_slope: float = 0.01,
            residual: Optional[torch.Tensor] = None, modulation: Optional[tuple] = None,
            pixel_shuffle: int = 1) -> torch.Tensor:
        """act(conv(x·(scale + 1) + shift) + bias) [-> PixelShuffle] + residual, on the sparse kernel where it
        pays (inference; the weight must be masked: apply_mask_ keeps it so)."""
        if torch.jit.is_tracing():  # torch.jit.trace / the ONNX exporter: the masked dense conv in standard ops
            y = epilogue(self._conv_forward(x * (modulation[0] + 1) + modulation[1] if modulation else x,
                                            self.weight * self.mask, self.bias), activation, negative_slope)
            y = F.pixel_shuffle(y, pixel_shuffle) if pixel_shuffle > 1 else y
            return y if residual is None else y + residual
        # (version counters are not traceable: a compiled forward takes the weight as masked, as apply_mask_ left it)
        if not torch.compiler.is_compiling() and (self.weight._version, self.mask._version) != self._masked_version:
            self.apply_mask_()
        x, padding, modulation = self.pad_by_mode(x, modulation)
        if torch.is_grad_enabled() and (x.requires_grad or (self.training and self.weight.requires_grad)):
            # training (or gradients wanted for the input): the dense conv of weight·mask, which has autograd
            y = ops.conv2d(x, self.weight * self.mask, self.bias, self.stride, padding, self.dilation,
                           self.groups, activation=activation, negative_slope=negative_slope, modulation=modulation,
                           backend=self.backend, pixel_shuffle=pixel_shuffle)
            return y if residual is None else y + residual
        with torch.no_grad():  # inference: no graph through the (inference-only) sparse kernel
            return self._infer(x, padding, activation, negative_slope, residual, modulation, pixel_shuffle)

    def _infer(self, x, padding, activation, negative_slope, residual, modulation, pixel_shuffle):
        # The crossovers are the cpu kernel's; on a GPU the dense path runs until the Triton / CUDA sparse kernels
        # have measured crossovers of their own (sft.sparse_conv2d(..., backend="triton") runs them on request).
        if not x.is_cpu or not self._sparse() or isinstance(padding, str):
            return ops.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                              activation=activation, negative_slope=negative_slope, modulation=modulation,
                              residual=residual, backend=self.backend, algorithm=self.algorithm,
                              pixel_shuffle=pixel_shuffle)
        return ops.sparse_conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                                 activation=activation, negative_slope=negative_slope, residual=residual,
                                 modulation=modulation, block=self.block, pixel_shuffle=pixel_shuffle,
                                 backend=self.backend if self.backend in ("cpu", "reference") else None)

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        input, residual = at_weight_precision(self.weight, input, residual)
        input = to_channels_last(input)
        return self.run(input, self.activation, self.negative_slope, residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", density={self.density:.3f}"
