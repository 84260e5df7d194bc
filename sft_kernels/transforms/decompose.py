"""What factorize_ and to_separable_ share: the convs they consider and which they cannot split, the per-layer inputs
and timing behind their measured choices, and the tail of a decomposition (swap the pairs in,
tell models that adapt to transforms, meet a PSNR budget, describe each row)."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

from .budget import run_budget
from .report import Report
from .swap import notify, swap_modules


def conv_candidates(model: nn.Module, filter_fn) -> dict:
    """{name: conv} of the model's (non-transposed) Conv2d modules that `filter_fn(module, name)` accepts."""
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or isinstance(m, nn.modules.conv._ConvTransposeNd):
            continue
        if filter_fn is not None and not filter_fn(m, name):
            continue
        out[name] = m
    return out


def dense_weight(conv: nn.Conv2d) -> torch.Tensor:
    """The conv's weight in float64, a pruned conv's mask applied (its factors are dense convs)."""
    w = conv.weight.detach().double()
    mask = getattr(conv, "mask", None)
    return w if mask is None else w * mask.double()


def fused_activation(conv: nn.Conv2d) -> dict:
    """A converted conv's fused activation, which the pair's last conv takes over (empty for an nn.Conv2d)."""
    act = getattr(conv, "activation", None)
    return dict(activation=act, negative_slope=getattr(conv, "negative_slope", 0.01)) if act else {}


def ineligible(conv: nn.Conv2d, min_kernel: int, verb: str) -> Optional[str]:
    """Why a conv cannot be split into a pair (grouped, too small a kernel, string padding, a non-zero padding
    mode), or None."""
    r, s = conv.kernel_size
    if conv.groups != 1:
        return "grouped conv"
    if min(r, s) < min_kernel or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        return f"kernel {r}x{s} / padding {conv.padding!r}: not {verb}"
    return None


def time_ms(module: nn.Module, x: torch.Tensor, repeat: int = 5) -> float:
    with torch.no_grad():
        module(x)
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - t)
    return sorted(samples)[len(samples) // 2] * 1e3


def layer_inputs(model: nn.Module, example, names: set) -> dict:
    """{name: the input tensor each named conv sees for `example`, an input or a tuple of them} (hooks, one
    forward)."""
    seen, hooks = {}, []

    def keep(name):
        def hook(module, inp, out):  # returns None: a hook's return value would replace the module's output
            seen.setdefault(name, inp[0].detach())
        return hook

    for name, m in model.named_modules():
        if name in names:
            hooks.append(m.register_forward_hook(keep(name)))
    try:
        with torch.no_grad():
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for h in hooks:
            h.remove()
    return seen


def apply_decomposition(model: nn.Module, rule: Callable, report: Report, action: str, config, batches, targets,
                        progress: bool, describe: Callable[[dict], str]) -> Report:
    """Swap `rule`'s pairs in (rule.stats / rule.pairs hold each layer's numbers and (pair, conv, MACs saved)), notify
    the model, restore layers for config.psnr_budget_db, and fill each row's stats and detail."""
    swap_modules(model, rule, report, action=action)
    for name, what in notify(model, report.transform, True):
        report.add(name, "note", what)
    restored = run_budget(model, config, rule.pairs, batches, targets, progress, report)
    for row in report.rows:
        row.stats.update(rule.stats.get(row.name, {}))
        if row.name in restored:
            row.action = "skipped"
            row.detail = (f"restored for the {config.psnr_budget_db} dB PSNR budget (alone it cost "
                          f"{restored[row.name]:.3f} dB)")
        elif row.action == action:
            st = row.stats
            row.detail = describe(st) + (f", {st['ms_before']:.2f} -> {st['ms_after']:.2f} ms" if "ms_before" in st
                                         else "")
    return report
