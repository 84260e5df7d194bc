"""A PSNR budget for structural transforms (factorize_, to_separable_): put the most sensitive layers back until the
transformed model is within `budget_db` of the original on calibration inputs scored against targets.

The scan is quantize_'s (leave one out: each transformed layer alone restored, the PSNR it buys measured), but the
order weighs what a layer costs to restore: PSNR bought per MAC given back, so cheap sensitive layers go first and
the speed-up is kept where it costs least quality.
"""
from __future__ import annotations

from torch import nn

from .quantize import _progress, _psnr, _run
from .swap import set_module


def meet_psnr_budget(model: nn.Module, swapped: dict, batches: list, targets: list, budget_db: float,
                     data_range: float = 1.0, progress: bool = True) -> tuple:
    """`swapped`: {name: (new module, original module, MACs saved)} already in `model`. Restores originals until
    PSNR(model) >= PSNR(original model) - budget_db. Returns (stats, names restored)."""
    for name, (new, old, _) in swapped.items():
        set_module(model, name, old)
    stats = dict(psnr_before=_psnr(_run(model, batches), targets, data_range))
    for name, (new, old, _) in swapped.items():
        set_module(model, name, new)
    current = stats["psnr_all"] = _psnr(_run(model, batches), targets, data_range)
    floor, restored = stats["psnr_before"] - budget_db, []
    if current < floor:
        gains = {}
        for name in _progress(list(swapped), "sensitivity scan", len(swapped), progress):
            new, old, _ = swapped[name]
            set_module(model, name, old)
            gains[name] = _psnr(_run(model, batches), targets, data_range) - current
            set_module(model, name, new)
        order = sorted(gains, key=lambda n: gains[n] / max(1, swapped[n][2]), reverse=True)
        for name in _progress(order, "meeting the budget", len(order), progress):
            if current >= floor:
                break
            set_module(model, name, swapped[name][1])
            restored.append(name)
            current = _psnr(_run(model, batches), targets, data_range)
        stats["sensitivity_db"] = gains
    stats["psnr_after"] = current
    return stats, restored


def check_budget_args(config, calibration, targets) -> tuple:
    """(calibration batches, targets) as lists of argument tuples / tensors; clear errors for a budget without
    data, a negative budget, or targets that do not pair with the inputs."""
    batches = [b if isinstance(b, tuple) else (b,) for b in calibration]
    targets = list(targets) if targets is not None else None
    budget = config.psnr_budget_db
    if budget is None:
        return batches, targets
    name = type(config).__name__
    if not budget >= 0:
        raise ValueError(f"{name}.psnr_budget_db must be >= 0 dB, got {budget}")
    if not batches or targets is None:
        raise ValueError(f"{name}(psnr_budget_db=...) scores the model: pass calibration= (inputs, e.g. LR images) "
                         "and targets= (what the outputs should be, e.g. their HR images)")
    if len(targets) != len(batches):
        raise ValueError(f"targets must pair with the calibration inputs: {len(targets)} vs {len(batches)}")
    return batches, targets


def run_budget(model, config, pairs: dict, batches: list, targets: list, progress: bool, report) -> dict:
    """Apply config.psnr_budget_db to a transform's swapped layers; {restored name: its leave-one-out PSNR gain}."""
    if config.psnr_budget_db is None or not pairs:
        return {}
    was = model.training
    model.eval()
    try:
        stats, restored = meet_psnr_budget(model, pairs, batches, targets, config.psnr_budget_db, config.data_range,
                                           progress)
    finally:
        model.train(was)
    report.stats.update({k: v for k, v in stats.items() if k != "sensitivity_db"})
    return {n: stats["sensitivity_db"][n] for n in restored}
