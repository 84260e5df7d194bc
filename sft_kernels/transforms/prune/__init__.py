"""`prune_(model, PruneConfig(...))`: magnitude pruning of a model's convs, in place, into `nn.SparseConv2d`
modules that run on the sparse kernel where it beats the dense paths (see nn/sparse.py).

Patterns: unstructured (per layer or one global threshold), N:M along input channels, blocks of output channels
(masks.py). Already-pruned convs are pruned further from their masked weights, so a gradual schedule (AGP) can
call prune_ with rising sparsity between fine-tuning steps. Depthwise convs and convs with fewer
than `min_out_channels` outputs stay dense. The report has a row per conv: its pattern, density, nonzeros and,
with `example` inputs, its MACs before and after (report.stats: the model's totals).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..fold import unfold_live_
from ...nn.sparse import SparseConv2d
from ..report import Report
from ..swap import notify, set_module, swap_modules, unfused
from . import masks
from .channels import ChannelGroup, prune_channels_, restore_shapes_
from .config import PATTERNS, PruneConfig

__all__ = ["prune_", "PruneConfig", "PATTERNS", "masks", "restore_", "restore_pruned_", "agp_sparsity",
           "prune_channels_", "restore_shapes_", "ChannelGroup"]


def _eligible(name: str, m: nn.Module, config: PruneConfig, filter_fn) -> Optional[str]:
    """None if `m` is pruned, else why not (a conv left alone), or "" for a module that is not a conv."""
    if not isinstance(m, nn.Conv2d):
        return ""
    if filter_fn is not None and not filter_fn(m, name):
        return "excluded by filter_fn"
    if m.groups == m.in_channels and m.in_channels > 1:
        return "depthwise: a few weights per channel, each felt in every pixel"
    if m.out_channels < config.min_out_channels:
        return f"{m.out_channels} output channels < min_out_channels={config.min_out_channels}"
    if config.pattern == "n:m" and m.weight.shape[1] % config.m:
        return f"n:m groups {config.m} input channels but this conv has {m.weight.shape[1]} per group"
    return None


def _output_sizes(model: nn.Module, example, names: set) -> dict:
    """{name: output pixels per image} of the named convs for one forward of `example` (a tensor or a tuple)."""
    sizes, hooks = {}, []
    for name, m in model.named_modules():
        if name in names:
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: sizes.__setitem__(name, out.shape[-2] * out.shape[-1])))
    try:
        with torch.no_grad(), unfused(model):  # module by module, so every conv's hook fires
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def prune_(model: nn.Module, config: Optional[PruneConfig] = None,
           filter_fn: Optional[Callable[[nn.Module, str], bool]] = None, example=None) -> Report:
    """Prune `model`'s convs in place (see the module docstring); returns the per-layer report. `filter_fn(module,
    name)` -> False leaves a conv alone (the argument order of convert_'s and the configs' filter_fn, torchao's);
    `example` (a model input, or a tuple of them) adds MACs to the report."""
    config = config or PruneConfig()
    report = Report("prune_")
    unfold_live_(model)  # convert_'s live batch-norm folds: masks and channel groups see the plain modules
    if config.pattern == "channel":
        return _prune_channels(model, config, example, report)
    targets, skipped = {}, {}
    for name, m in model.named_modules():
        why = _eligible(name, m, config, filter_fn)
        if why is None:
            targets[name] = m
        elif why:
            skipped[name] = why
    pixels = _output_sizes(model, example, set(targets) | set(skipped)) if example is not None else {}
    global_masks = {}
    if config.scope == "global" and targets:
        global_masks = dict(zip(targets, masks.global_unstructured(
            [m.weight * m.mask if isinstance(m, SparseConv2d) else m.weight for m in targets.values()],
            config.sparsity)))
    totals = {"weights": 0, "nonzeros": 0, "macs_before": 0, "macs_after": 0}

    def rule(name, child):
        if name in skipped:
            return skipped[name]
        if name not in targets:
            return None
        w = child.weight.detach() * child.mask if isinstance(child, SparseConv2d) else child.weight.detach()
        if config.pattern == "unstructured":
            mask = global_masks[name] if global_masks else masks.unstructured(w, config.sparsity)
        elif config.pattern == "n:m":
            mask = masks.n_m(w, config.n, config.m)
        else:
            mask = masks.block(w, config.sparsity, config.block)
        if isinstance(child, SparseConv2d):
            mask &= child.mask
            child.mask.copy_(mask)
            child.apply_mask_()
            new = child
        else:
            block = 4 if config.pattern == "block" and config.block % 4 == 0 else None
            new = SparseConv2d.from_conv(child, mask, config.backend, block)
        nnz, numel = int(mask.sum()), mask.numel()
        px = pixels.get(name, 0)
        stats = {"density": nnz / numel, "nonzeros": nnz, "weights": numel}
        if px:
            stats.update(macs_before=numel * px, macs_after=nnz * px)
        for key in totals:
            totals[key] += stats.get(key, 0)
        details[name] = (f"{config.pattern} {1 - nnz / numel:.1%} sparse ({nnz}/{numel} kept), "
                         + ("sparse kernel" if new._sparse() else "dense kernel (sparse would not pay here)"), stats)
        return new

    details = {}
    swap_modules(model, rule, report, action="pruned")
    for row in report.rows:
        if row.action == "pruned":
            row.detail, row.stats = details[row.name]
    report.stats.update(totals, sparsity=1 - totals["nonzeros"] / max(1, totals["weights"]))
    for name, what in notify(model, "prune_", True):
        report.add(name, "fused", what)
    return report


def _conv_macs(model: nn.Module, example) -> dict:
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    px = _output_sizes(model, example, set(convs)) if example is not None else {}
    return {n: m.weight.numel() * px.get(n, 0) for n, m in convs.items()}


def _prune_channels(model: nn.Module, config: PruneConfig, example, report: Report) -> Report:
    """pattern="channel": prune_channels_ over the model's dependency groups, reported per group and per conv."""
    before = _conv_macs(model, example)
    shapes = {n: tuple(m.weight.shape) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    params = sum(p.numel() for p in model.parameters())
    done = prune_channels_(model, config.sparsity, multiple=config.multiple, example=example)
    after = _conv_macs(model, example)
    for name, size, kept, _ in done:
        report.add(name, "channels", f"{kept}/{size} channels kept", channels_before=size, channels_after=kept)
    if not done:
        converted = sorted(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d)
        why = (f"its convs {', '.join(converted[:4])}{' ...' if len(converted) > 4 else ''} are converted, pruned or "
               "quantized, and only plain nn.Conv2d are rebuilt: prune channels before convert_ / quantize_ / prune_"
               if converted else "every channel space is fixed (model inputs and outputs, concatenations, grouped "
               "convs, reshapes) or has no conv writing it")
        report.add(type(model).__name__, "note", f"no channel group to prune: {why}")
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and shapes.get(n) != tuple(m.weight.shape):
            was, now = shapes[n], tuple(m.weight.shape)
            report.add(n, "pruned", f"{was[1]}->{was[0]} became {now[1]}->{now[0]}",
                       macs_before=before.get(n, 0), macs_after=after.get(n, 0))
    report.stats.update(params_before=params, params_after=sum(p.numel() for p in model.parameters()),
                        macs_before=sum(before.values()), macs_after=sum(after.values()))
    for name, what in notify(model, "prune_", True):
        report.add(name, "fused", what)
    return report


def restore_pruned_(model: nn.Module, state_dict: dict) -> list:
    """Swap the convs `state_dict` holds masks for (keys "<conv>.mask") into SparseConv2d modules, so a pruned
    model's state_dict loads into a freshly built model; returns their names. The weights themselves come with
    load_state_dict afterwards."""
    mods = dict(model.named_modules())
    names = [k[:-len(".mask")] for k in state_dict if k.endswith(".mask")]
    for name in names:
        m = mods.get(name)
        if not isinstance(m, nn.Conv2d) or isinstance(m, SparseConv2d):
            continue
        set_module(model, name, SparseConv2d.from_conv(m, state_dict[name + ".mask"]))
    if names:
        notify(model, "prune_", True)
    return names


def restore_(model: nn.Module, state_dict: dict) -> None:
    """Make a freshly built model take a pruned model's state_dict: convs rebuilt to its channel widths
    (restore_shapes_), masked convs made SparseConv2d (restore_pruned_). A no-op for an unpruned state_dict."""
    restore_shapes_(model, state_dict)
    restore_pruned_(model, state_dict)


def agp_sparsity(step: int, final: float, until: int) -> float:
    """Zhu & Gupta's gradual schedule: sparsity final·(1 − (1 − step/until)³), reaching `final` at step `until`."""
    if step >= until:  # until 0: the final sparsity at once
        return final
    t = max(0.0, step / until)
    return final * (1.0 - (1.0 - t) ** 3)
