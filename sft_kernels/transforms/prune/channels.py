"""Structured channel pruning with dependency groups: channels removed from every layer that shares them.

A group is one channel space: the layers that write it (producers, their output channels) and the layers that
read it (consumers, their input channels). A residual stream is one group (every layer writing to the stream or
its skips keeps the same indices: ASSL, SRP), an SFT layer's scale and shift convs follow the channels they
modulate, and a PixelShuffle(r) producer keeps each group's r² channels whole (channel c of the shuffled space is
the producer's outputs c·r² ... c·r² + r² − 1). A model describes its groups with a method
`_sft_kernels_channel_groups()` (SFTNet does); `prune_channels_` ranks each group's channels by the summed squared
weights of its scoring layers and rebuilds the convs smaller, so the model saves, loads (`restore_shapes_`),
converts and exports as a plain model of the new shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..swap import set_module


@dataclass
class ChannelGroup:
    """producers: [(module name, r²)], output channels c·r² ... c·r² + r² − 1 of each are channel c;
    consumers: module names whose input channels are the group's; score: the module names whose weights rank the
    channels (default: every producer and consumer)."""
    name: str
    size: int
    producers: list
    consumers: list
    score: list = field(default_factory=list)


def _importance(mods: dict, g: ChannelGroup) -> torch.Tensor:
    imp = torch.zeros(g.size, dtype=torch.float64)
    scored = set(g.score) or {n for n, _ in g.producers} | set(g.consumers)
    for name, r2 in g.producers:
        if name in scored:
            w = mods[name].weight.detach().double()
            imp += w.reshape(g.size, r2, -1).pow(2).sum((1, 2))
    for name in g.consumers:
        if name in scored:
            w = mods[name].weight.detach().double()
            imp += w.transpose(0, 1).reshape(g.size, -1).pow(2).sum(1)
    return imp


def _rebuilt(conv: nn.Conv2d, out_idx, in_idx) -> nn.Conv2d:
    """A conv with only the given output / input channels (None: all)."""
    if conv.groups != 1:
        raise ValueError(f"channel pruning rebuilds ungrouped convs only, got groups={conv.groups}")
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    if out_idx is not None:
        w, b = w[out_idx], (b[out_idx] if b is not None else None)
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=b is not None, padding_mode=conv.padding_mode).to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def prune_channels_(model: nn.Module, ratio: float, groups=None, multiple: int = 4) -> list:
    """Remove round(ratio · size) channels (kept counts rounded up to a multiple of `multiple`, the kernels'
    friendliest widths) from every group of `model` (its `_sft_kernels_channel_groups()` unless `groups` is
    given), in place; returns [(group name, channels before, after, kept indices)]."""
    if not 0 <= ratio < 1:
        raise ValueError(f"channel pruning ratio must be in [0, 1), got {ratio!r}")
    if groups is None:
        hook = getattr(model, "_sft_kernels_channel_groups", None)
        if not callable(hook):
            raise ValueError(f"{type(model).__name__} does not describe its channel dependency groups: define "
                             "_sft_kernels_channel_groups() (see transforms/prune/channels.py) or pass groups=")
        groups = hook()
    mods = dict(model.named_modules())
    outs, ins, done = {}, {}, []
    for g in groups:
        keep_n = min(g.size, max(multiple, -(-round(g.size * (1 - ratio)) // multiple) * multiple))
        keep = torch.topk(_importance(mods, g), keep_n).indices.sort().values
        for name, r2 in g.producers:
            outs[name] = (keep.view(-1, 1) * r2 + torch.arange(r2)).reshape(-1)
        for name in g.consumers:
            ins[name] = keep
        done.append((g.name, g.size, keep_n, keep.tolist()))
    for name in sorted(set(outs) | set(ins)):
        set_module(model, name, _rebuilt(mods[name], outs.get(name), ins.get(name)))
    return done


def restore_shapes_(model: nn.Module, state_dict: dict) -> list:
    """Rebuild the convs whose weights in `state_dict` have other channel counts (a channel-pruned model's
    checkpoint), so it loads strictly into a freshly built model; returns their names."""
    changed = []
    for name, m in list(model.named_modules()):
        key = f"{name}.weight" if name else "weight"
        if not isinstance(m, nn.Conv2d) or key not in state_dict or state_dict[key].shape == m.weight.shape:
            continue
        k, cg = state_dict[key].shape[:2]
        new = nn.Conv2d(cg * m.groups, k, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                        bias=m.bias is not None, padding_mode=m.padding_mode)
        set_module(model, name, new)
        changed.append(name)
    return changed
