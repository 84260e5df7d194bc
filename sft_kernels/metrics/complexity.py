"""Model complexity: parameter count, size in bytes, and multiply-accumulates (MACs).

MACs are counted by running one forward pass with forward hooks, so they follow the shapes
the model really produces (strides, upsampling, pixel shuffle) without a shape calculator:

- convolution (``nn.Conv1d/2d/3d`` and any subclass):  out_elems * C_in/groups * prod(kernel)
- transposed convolution (``nn.ConvTranspose*d``):       in_elems  * C_out/groups * prod(kernel)
- ``nn.Linear`` (and subclasses):                        out_elems * in_features
- int8 layers (``QuantConv2d``, ``QuantLinear``): as the float layer they replace

A pruned conv (a ``mask`` buffer: ``sft_kernels.nn.SparseConv2d``) counts its kept weights only (the MACs above
times the fraction kept): the work its sparse kernel does. ``out_elems``/``in_elems`` include the batch. Bias adds,
activations, the SFT modulation, residual adds and resampling are not counted (they are O(elements), not
O(elements * K)).
One MAC = one multiply and one add; FLOPs ~= 2 * MACs.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn

__all__ = ["count_params", "model_size_bytes", "conv_macs", "layer_macs", "LayerMACs"]


class LayerMACs(NamedTuple):
    """MACs of one call of one module: (qualified name, class name, MACs)."""
    name: str
    type: str
    macs: int


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared parameters counted once). An int8 layer's weights and bias, which it holds
    as buffers (`weight_int8`), count too, unless `trainable_only`."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if not trainable_only:
        for m in model.modules():
            if _int8_layer(m):
                n += m.weight_int8.numel() + (m.bias.numel() if "bias" in m._buffers and m.bias is not None else 0)
    return n


def model_size_bytes(model: nn.Module) -> int:
    """Bytes held by parameters and buffers (numel * element_size, shared tensors counted once).

    Quantized/packed weights kept as buffers (e.g. int8 weights plus scales) count at their real
    element size, which is the point of measuring bytes rather than parameters.
    """
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def _module_macs(module: nn.Module, inputs: tuple, output) -> int | None:
    """MACs of one call, or None if the module is not a counted kind."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        x = inputs[0]
        return x.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvNd):
        if not isinstance(output, torch.Tensor):
            return None
        macs = output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        mask = getattr(module, "mask", None)
        if isinstance(mask, torch.Tensor) and mask.shape == module.weight.shape:
            macs = macs * int(mask.sum()) // mask.numel()
        return macs
    if isinstance(module, nn.Linear) or (_int8_layer(module) and hasattr(module, "in_features")):
        if not isinstance(output, torch.Tensor):
            return None
        return output.numel() * module.in_features
    if _int8_layer(module):  # QuantConv2d: the conv's output, before any PixelShuffle of a fused forward
        if not isinstance(output, torch.Tensor):
            return None
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return None


def _int8_layer(module: nn.Module) -> bool:
    """An int8 conv or Linear (QuantConv2d, QuantLinear): plain nn.Modules holding their weights as the
    `weight_int8` buffer."""
    return isinstance(getattr(module, "weight_int8", None), torch.Tensor)


def layer_macs(model: nn.Module, *inputs, **kwargs) -> list[LayerMACs]:
    """Run ``model(*inputs, **kwargs)`` once under ``torch.no_grad()`` in eval mode (restored after) and return the
    MACs of every counted module call, in call order (a module called twice appears twice)."""
    names = {m: n for n, m in model.named_modules()}
    records: list[LayerMACs] = []

    def hook(module, args, output):
        macs = _module_macs(module, args, output)
        if macs is not None:
            records.append(LayerMACs(names.get(module, ""), type(module).__name__, int(macs)))

    counted = (nn.modules.conv._ConvNd, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, counted) or _int8_layer(m)]
    from ..transforms.swap import unfused

    was_training = model.training
    model.eval()  # counting must not move batch-norm statistics
    try:
        with torch.no_grad(), unfused(model):  # a fused forward (SFTNet's) calls its convs' kernels directly
            model(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records


def conv_macs(model: nn.Module, *inputs, **kwargs) -> int:
    """Total MACs of convolutions, transposed convolutions and linear layers in one forward pass
    ``model(*inputs, **kwargs)`` (see the module docstring for the formulas)."""
    return sum(r.macs for r in layer_macs(model, *inputs, **kwargs))
