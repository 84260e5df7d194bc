"""SFT-aware fused forward of SFTNet ("pytorch" variant), used after `sft_kernels.convert_`.

Same function as `SFTNet.forward`, fewer passes over memory:
  * each SFT layer's two first 1×1 convs run as one 32→64 conv (LeakyReLU fused); the second convs read
    their halves of it in place.
    (Batching all 33 layers into one 32→2112 conv was measured slower on the CPU: its 277 MB of scale/shift
    maps go to DRAM and back, where per-layer pairs of 4 MB maps stay in cache.)
  * each modulation x·(scale+1) + shift is fused into the conv that reads it (`ops.conv2d(modulation=...)`:
    applied while the cpu backend packs its input tiles), so the modulated tensor is never written;
  * ReLU after conv0 of each residual block, the block's `x + res`, the trunk's `fea + trunk`, the HR branch's
    ReLUs and its PixelShuffles are fused into the convs' epilogues (ReLU commutes with PixelShuffle).
The convs run on each module's backend/algorithm when converted (`sft_kernels.nn.Conv2d`), else backend=None.
"""
from __future__ import annotations

import torch

from .. import ops


def _conv(module, x, activation=None, residual=None, negative_slope=0.01, weight=None, bias=None, groups=None,
          pixel_shuffle=1, modulation=None):
    return ops.conv2d(x, module.weight if weight is None else weight, module.bias if bias is None else bias,
                      module.stride, module.padding, module.dilation, module.groups if groups is None else groups,
                      activation=activation, negative_slope=negative_slope, residual=residual,
                      backend=getattr(module, "backend", None), algorithm=getattr(module, "algorithm", None),
                      pixel_shuffle=pixel_shuffle, modulation=modulation)


def sft_layers(model) -> list:
    """The SFT layers of the trunk, in the order the forward applies them."""
    layers = []
    for i in range(model.num_blocks):
        layers += [model.sft_branch[i].sft0, model.sft_branch[i].sft1]
    return layers + [model.sft_branch[model.num_blocks]]


def modulation(layer, cond: torch.Tensor) -> tuple:
    """(scale, shift) of one SFT layer: its two first convs run as one 32→64 conv (LeakyReLU fused), then
    each second conv reads its half of that output in place.
    (A 2-group conv for the second pair was measured ~2× slower than two convs on channel slices.)"""
    c0s, c0t, c1s, c1t = layer.SFT_scale_conv0, layer.SFT_shift_conv0, layer.SFT_scale_conv1, layer.SFT_shift_conv1
    h = _conv(c0s, cond, "leaky_relu", negative_slope=layer.negative_slope,
              weight=torch.cat([c0s.weight, c0t.weight]), bias=torch.cat([c0s.bias, c0t.bias]))
    mid = c0s.out_channels
    return _conv(c1s, h[:, :mid]), _conv(c1t, h[:, mid:])


def fused_forward(model, img: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    cond = model.CondNet(seg)
    mods = (modulation(layer, cond) for layer in sft_layers(model))  # lazily: each pair stays in cache
    fea = _conv(model.conv0, img)
    x = fea
    for i in range(model.num_blocks):
        block = model.sft_branch[i]
        r = _conv(block.conv0, x, "relu", modulation=next(mods))
        x = _conv(block.conv1, r, residual=x, modulation=next(mods))
    x = _conv(model.sft_branch[model.num_blocks + 1], x, residual=fea, modulation=next(mods))
    hr = model.HR_branch
    x = _conv(hr[0], x, "relu", pixel_shuffle=2)
    x = _conv(hr[3], x, "relu", pixel_shuffle=2)
    x = _conv(hr[6], x, "relu")
    return _conv(hr[8], x)
