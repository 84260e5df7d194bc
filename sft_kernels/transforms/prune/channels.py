"""Structured channel pruning with dependency groups: channels removed from every layer that shares them.

A group is one channel space: the layers that write it (producers, their output channels) and the layers that
read it (consumers, their input channels). A residual stream is one group (every layer writing to the stream or
its skips keeps the same indices: ASSL, SRP), an SFT layer's scale and shift convs follow the channels they
modulate, and a PixelShuffle(r) producer keeps each group's r² channels whole (channel c of the shuffled space is
the producer's outputs c·r² ... c·r² + r² − 1). A model describes its groups with a method
`_sft_kernels_channel_groups()` (SFTNet does); any other model has them found by tracing one forward of an example
input (trace.py). `prune_channels_` ranks each group's channels by the summed squared weights of its scoring layers
and rebuilds the layers smaller (convs, the batch norms and depthwise convs that follow a group, a classifier's
Linear reading one), so the model saves, loads (`restore_shapes_`), converts and exports as a plain model of the new
shapes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..swap import set_module
from .group import ChannelGroup


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


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    """`new` on `old`'s device and floating dtype (those of its first floating parameter or buffer)."""
    ref = next((t for t in (*old.parameters(recurse=False), *old.buffers(recurse=False))
                if t is not None and t.is_floating_point()), None)
    return new if ref is None else new.to(ref.device, ref.dtype)


def _width(m: nn.Module) -> int:
    """Channels of a batch norm (affine or not) or a conv's outputs."""
    return m.num_features if isinstance(m, nn.BatchNorm2d) else m.weight.shape[0]


def _followed(m: nn.Module, idx) -> nn.Module:
    """A BatchNorm2d or depthwise conv with only the channels `idx`."""
    n = len(idx)
    if isinstance(m, nn.BatchNorm2d):
        new = nn.BatchNorm2d(n, m.eps, m.momentum, m.affine, m.track_running_stats)
    else:
        new = nn.Conv2d(n, n, m.kernel_size, m.stride, m.padding, m.dilation, groups=n, bias=m.bias is not None,
                        padding_mode=m.padding_mode)
    new = _like(new, m)
    with torch.no_grad():
        for key, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if t is not None:
                getattr(new, key).copy_(t if t.dim() == 0 else t[idx])
    new.train(m.training)
    return new


def _linear(fc: nn.Linear, in_idx) -> nn.Linear:
    new = nn.Linear(len(in_idx), fc.out_features, bias=fc.bias is not None).to(fc.weight.device, fc.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(fc.weight[:, in_idx])
        if fc.bias is not None:
            new.bias.copy_(fc.bias)
    return new


def _rebuilt(conv: nn.Module, out_idx, in_idx) -> nn.Module:
    """A conv (or a Linear reading a group) with only the given output / input channels (None: all)."""
    if isinstance(conv, nn.Linear):
        return _linear(conv, in_idx)
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
    return new.train(conv.training)  # an eval model's convs stay in eval


def prune_channels_(model: nn.Module, ratio: float, groups=None, multiple: int = 4, example=None) -> list:
    """Remove round(ratio · size) channels (kept counts rounded up to a multiple of `multiple`, the kernels'
    friendliest widths) from every group of `model`, in place: `groups` if given, else the model's
    `_sft_kernels_channel_groups()`, else the groups traced from one forward of `example` (trace.py). Returns
    [(group name, channels before, after, kept indices)]."""
    if not 0 <= ratio < 1:
        raise ValueError(f"channel pruning ratio must be in [0, 1), got {ratio!r}")
    if groups is None:
        hook = getattr(model, "_sft_kernels_channel_groups", None)
        if callable(hook):
            groups = hook()
        elif example is not None:
            from .trace import channel_groups

            groups = channel_groups(model, example)
        else:
            raise ValueError(f"{type(model).__name__} does not describe its channel dependency groups: pass example= "
                             "(an input, to trace them), or groups=, or define _sft_kernels_channel_groups() (see "
                             "transforms/prune/channels.py)")
    mods = dict(model.named_modules())
    outs, ins, follow, done = {}, {}, {}, []
    for g in groups:
        keep_n = min(g.size, max(multiple, -(-round(g.size * (1 - ratio)) // multiple) * multiple))
        keep = torch.topk(_importance(mods, g), keep_n).indices.sort().values
        for name, r2 in g.producers:
            outs[name] = (keep.view(-1, 1) * r2 + torch.arange(r2)).reshape(-1)
        for name in g.consumers:
            ins[name] = keep
        for name in g.followers:
            follow[name] = keep
        done.append((g.name, g.size, keep_n, keep.tolist()))
    for name in sorted(set(outs) | set(ins)):
        set_module(model, name, _rebuilt(mods[name], outs.get(name), ins.get(name)))
    for name, keep in follow.items():
        if len(keep) < _width(mods[name]):
            set_module(model, name, _followed(mods[name], keep))
    return done


def restore_shapes_(model: nn.Module, state_dict: dict) -> list:
    """Rebuild the convs, batch norms and Linears whose tensors in `state_dict` have other channel counts (a
    channel-pruned model's checkpoint), so it loads strictly into a freshly built model; returns their names."""
    changed = []
    for name, m in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        # a batch norm's width: its statistics, or without them its affine weight (or nothing to restore)
        attr = next((a for a in (("running_mean", "weight") if isinstance(m, nn.BatchNorm2d) else ("weight",))
                     if prefix + a in state_dict), None)
        if attr is None:
            continue
        have, shape = getattr(m, attr), state_dict[prefix + attr].shape
        if have is None or shape == have.shape:
            continue
        if isinstance(m, nn.BatchNorm2d):
            new = nn.BatchNorm2d(shape[0], m.eps, m.momentum, m.affine, m.track_running_stats)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(shape[1], shape[0], bias=m.bias is not None)
        else:
            k, cg = shape[:2]
            depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
            groups = k if depthwise else m.groups
            new = nn.Conv2d(cg * groups, k, m.kernel_size, m.stride, m.padding, m.dilation, groups,
                            bias=m.bias is not None, padding_mode=m.padding_mode)
        set_module(model, name, _like(new, m).train(m.training))  # an eval model's batch norms stay in eval
        changed.append(name)
    return changed
