"""to_separable_: k×k convs become depthwise-separable pairs (a depthwise k×k conv with channel multiplier m, then a
1×1 conv), run as one fused `sft.separable_conv2d`, initialised by least squares on the weights.

    report = sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=2), example=x)

The pair computes out[k] = Σ_c Σ_j P[k, c·m+j] · (D[c·m+j] ⋆ x[c]): for each input channel c, the K × (R·S) slice
W[:, c] of the original weight is replaced by a rank-m product P_c D_c. The best such product in the least-squares
sense (Frobenius norm of the weight error, Eckart–Young) is the truncated SVD of each slice, so that is the
initialisation; at m = min(K, R·S) the pair reproduces the conv exactly. The error left is what distillation
(`sft-kernels train --teacher ...`) has to recover. Multipliers: a fixed `multiplier`, or per layer the smallest
one keeping `energy` of the squared singular values over all its slices. The report has a row per conv: multiplier,
energy kept, MACs per output pixel before and after, parameters, and with `example` the measured ms before and
after on this machine's kernels.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..nn import SeparableConv2d
from .fold import unfold_live_
from .budget import check_budget_args
from .decompose import (apply_decomposition, conv_candidates, dense_weight, fused_activation, ineligible, layer_inputs,
                        time_ms)
from .report import Report


@dataclasses.dataclass
class SeparableConfig:
    """How to_separable_ picks each layer's channel multiplier (set `energy` to choose it per layer)."""

    multiplier: int = 1  # depthwise outputs per input channel: the rank of each K x R·S weight slice
    energy: Optional[float] = None  # instead: the smallest multiplier keeping this fraction of squared singular values
    min_kernel: int = 3  # convert only kernels at least this size in both dims
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None
    psnr_budget_db: Optional[float] = None  # restore the most sensitive layers until within this of the original
    data_range: float = 1.0  # for PSNR: the targets' range (1.0: images in [0, 1])

    def __post_init__(self):
        if not isinstance(self.multiplier, int) or self.multiplier < 1:
            raise ValueError(f"SeparableConfig.multiplier must be an int >= 1, got {self.multiplier!r}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"SeparableConfig.energy must lie in (0, 1], got {self.energy}")


def _slice_svd(conv: nn.Conv2d) -> tuple:
    """Per input channel c, the SVD of W[:, c] as K × (R·S), in float64: U (C, K, n), S (C, n), Vh (C, n, R·S)."""
    w = dense_weight(conv)
    k, c, r, s = w.shape
    return torch.linalg.svd(w.permute(1, 0, 2, 3).reshape(c, k, r * s), full_matrices=False)


def _energy_multiplier(sv: torch.Tensor, energy: float) -> int:
    total = (sv ** 2).sum().clamp_min(1e-300)
    kept = torch.cumsum((sv ** 2).sum(0), 0) / total  # summed over channels, by rank
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype)).item()) + 1


def split(conv: nn.Conv2d, multiplier: int) -> SeparableConv2d:
    """The depthwise-separable pair of `conv` with this channel multiplier, least-squares initialised (exact at
    multiplier >= min(K, R·S); ranks past the slices' rank get zero weights)."""
    k, c, r, s = conv.weight.shape
    u, sv, vh = _slice_svd(conv)
    n = sv.shape[1]
    m = multiplier
    root = sv[:, :min(m, n)].sqrt()
    d = torch.zeros(c, m, r * s, dtype=torch.float64, device=sv.device)
    p = torch.zeros(k, c, m, dtype=torch.float64, device=sv.device)
    d[:, :n] = root[:, :, None] * vh[:, :m]
    p[:, :, :n] = (u[:, :, :m] * root[:, None, :]).permute(1, 0, 2)
    new = SeparableConv2d(c, k, (r, s), conv.stride, conv.padding, conv.dilation, multiplier=m,
                          bias=conv.bias is not None, backend=getattr(conv, "backend", None), **fused_activation(conv))
    new.dw.bias = None  # the original bias belongs after the sum over channels: on the pointwise conv
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.dw.weight.copy_(d.reshape(c * m, 1, r, s))
        new.pw.weight.copy_(p.reshape(k, c * m, 1, 1))
        if conv.bias is not None:
            new.pw.bias.copy_(conv.bias)
    return new


def _macs_per_pixel(conv: nn.Conv2d, multiplier: Optional[int] = None) -> int:
    k, c, r, s = conv.weight.shape
    return k * c * r * s if multiplier is None else c * multiplier * (r * s + k)


def to_separable_(model: nn.Module, config: SeparableConfig = SeparableConfig(),
                  example=None, calibration: Iterable = (),
                  targets: Optional[Iterable] = None, progress: bool = True) -> Report:
    """Replace eligible k×k convs of `model` (in place) by least-squares-initialised SeparableConv2d pairs; see the
    module docstring. Grouped convs, 'same'/'valid' string padding, non-zero padding modes, kernels under
    `min_kernel` and layers where the pair would not save MACs are left as they are (the report says why). A PSNR
    budget works as factorize_'s (`config.psnr_budget_db` with `calibration` and `targets`)."""
    unfold_live_(model)  # convert_'s live batch-norm folds: each conv is decomposed on its own
    calibration, targets = check_budget_args(config, calibration, targets)
    report = Report("to_separable_")
    candidates = conv_candidates(model, config.filter_fn)
    inputs = layer_inputs(model, example, set(candidates)) if example is not None else {}

    def rule(name, child):
        if name not in candidates:
            return None
        why = ineligible(child, config.min_kernel, "converted")
        if why:
            return why
        k, c, r, s = child.weight.shape
        sv = _slice_svd(child)[1]
        full = min(k, r * s)
        m = _energy_multiplier(sv, config.energy) if config.energy is not None else config.multiplier
        m = min(m, full)
        if _macs_per_pixel(child, m) >= _macs_per_pixel(child):
            return f"multiplier {m} would not save MACs ({_macs_per_pixel(child, m)} vs {_macs_per_pixel(child)})"
        pair = split(child, m)
        stats = dict(multiplier=m, full_multiplier=full, macs_before=_macs_per_pixel(child),
                     macs_after=_macs_per_pixel(child, m),
                     energy_kept=float((sv[:, :m] ** 2).sum() / (sv ** 2).sum().clamp_min(1e-300)),
                     params_before=sum(p.numel() for p in child.parameters()),
                     params_after=sum(p.numel() for p in pair.parameters()))
        x = inputs.get(name)
        if x is not None:
            stats.update(ms_before=time_ms(child, x), ms_after=time_ms(pair, x))
        rule.stats[name] = stats
        rule.pairs[name] = (pair, child, stats["macs_before"] - stats["macs_after"])
        return pair

    rule.stats, rule.pairs = {}, {}
    return apply_decomposition(model, rule, report, "separable", config, calibration, targets, progress, _describe)


def _describe(st: dict) -> str:
    return (f"multiplier {st['multiplier']}/{st['full_multiplier']}, MACs x{st['macs_after'] / st['macs_before']:.2f}, "
            f"energy {100 * st['energy_kept']:.1f} %")
