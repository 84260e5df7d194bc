"""What factorize_ and to_separable_ share: the convs they consider, and the tail of a decomposition (swap the pairs in,
tell models that adapt to transforms, meet a PSNR budget, describe each row)."""
from __future__ import annotations

from typing import Callable

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
