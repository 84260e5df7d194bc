"""factorize_: spatial SVD of k×k convs (Jaderberg et al. 2014; AIMET's "spatial SVD"): a K×C×R×S conv becomes a
R×1 conv to `rank` channels followed by a 1×S conv to K channels, initialised from the SVD of the weight reshaped to
(C·R) × (K·S), so that at full rank the pair computes the original conv exactly.

    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(mac_ratio=0.5), example=x)

Ranks per layer: a fixed `rank`, the smallest rank keeping `energy` of the squared singular values, or the rank that
brings the layer to `mac_ratio` of its MACs. Layers where the pair would not cost fewer MACs stay as they are. With
an `example` input the report carries each layer's measured time before and after (our kernels, this machine), and
`target_speedup` picks per layer, among the ranks at or above the energy floor, the highest rank whose measured time
gives that speedup over the layer's own conv (the best quality at that speed). The factorized model is an ordinary
module tree (SpatialSVDConv2d holds the two convs as `v` and `h`), so it trains (distillation recovers quality),
saves and converts like others.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..nn import Conv2d
from .fold import unfold_live_
from .budget import check_budget_args
from .decompose import (apply_decomposition, conv_candidates, dense_weight, fused_activation, ineligible, layer_inputs,
                        time_ms)
from .report import Report


@dataclasses.dataclass
class SVDConfig:
    """How factorize_ picks each layer's rank (set one of rank / energy / mac_ratio / target_speedup)."""

    rank: Optional[int] = None  # the same rank for every layer (capped at full rank)
    energy: Optional[float] = None  # keep this fraction of the squared singular values, e.g. 0.99
    mac_ratio: Optional[float] = None  # the rank that brings the layer to this fraction of its MACs, e.g. 0.5
    target_speedup: Optional[float] = None  # measured: the highest rank >= the energy floor reaching this speedup
    min_kernel: int = 3  # factorize only kernels at least this size in both dims
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None
    psnr_budget_db: Optional[float] = None  # restore the most sensitive layers until within this of the original
    data_range: float = 1.0  # for PSNR: the targets' range (1.0: images in [0, 1])

    def __post_init__(self):
        chosen = [n for n in ("rank", "energy", "mac_ratio", "target_speedup") if getattr(self, n) is not None]
        if len(chosen) != 1 and not (set(chosen) == {"energy", "target_speedup"}):
            raise ValueError("SVDConfig: set exactly one of rank, energy, mac_ratio, target_speedup (target_speedup "
                             f"may come with energy as its floor); got {chosen or 'none'}")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"SVDConfig.rank must be >= 1, got {self.rank}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise ValueError(f"SVDConfig.energy must lie in (0, 1], got {self.energy}")
        if self.mac_ratio is not None and not 0 < self.mac_ratio < 1:
            raise ValueError(f"SVDConfig.mac_ratio must lie in (0, 1), got {self.mac_ratio}")
        if self.target_speedup is not None and self.target_speedup <= 1:
            raise ValueError(f"SVDConfig.target_speedup must be > 1, got {self.target_speedup}")


class SpatialSVDConv2d(nn.Module):
    """conv(x) ≈ h(v(x)): v is R×1 (C -> rank, the vertical stride / padding / dilation), h is 1×S (rank -> K, the
    horizontal ones, the bias, and a converted conv's fused activation and residual)."""

    def __init__(self, v: nn.Conv2d, h: nn.Conv2d):
        super().__init__()
        self.v, self.h = v, h

    @property
    def rank(self) -> int:
        return self.v.out_channels

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        y = self.v(x)
        return self.h(y) if residual is None else self.h(y, residual)


def _svd(conv: nn.Conv2d) -> tuple:
    """U (C·R × n), singular values (n), Vh (n × K·S) of the weight as a (C·R) × (K·S) matrix, in float64."""
    w = dense_weight(conv)  # K, C, R, S
    k, c, r, s = w.shape
    m = w.permute(1, 2, 0, 3).reshape(c * r, k * s)
    u, sv, vh = torch.linalg.svd(m, full_matrices=False)
    return u, sv, vh


def split(conv: nn.Conv2d, rank: int) -> SpatialSVDConv2d:
    """The two convs of rank `rank` initialised from the SVD (exact at full rank)."""
    u, sv, vh = _svd(conv)
    rank = min(rank, sv.numel())
    k, c, r, s = conv.weight.shape
    root = sv[:rank].sqrt()
    w1 = (u[:, :rank] * root).t().reshape(rank, c, r, 1)
    w2 = (root[:, None] * vh[:rank]).reshape(rank, k, s).permute(1, 0, 2).reshape(k, rank, 1, s)
    ours = isinstance(conv, Conv2d)  # a converted conv's factors are converted convs (a pruned one's: dense)
    make = Conv2d if ours else nn.Conv2d
    dtype, device = conv.weight.dtype, conv.weight.device
    extra = dict(dtype=dtype, device=device, **(dict(backend=conv.backend) if ours else {}))
    v = make(c, rank, (r, 1), (conv.stride[0], 1), (conv.padding[0], 0), (conv.dilation[0], 1), bias=False, **extra)
    h = make(rank, k, (1, s), (1, conv.stride[1]), (0, conv.padding[1]), (1, conv.dilation[1]),
             bias=conv.bias is not None, **extra, **fused_activation(conv))
    with torch.no_grad():
        v.weight.copy_(w1)
        h.weight.copy_(w2)
        if conv.bias is not None:
            h.bias.copy_(conv.bias)
    return SpatialSVDConv2d(v, h)


def _macs_per_pixel(conv: nn.Conv2d, rank: Optional[int] = None) -> float:
    """MACs per output pixel (stride 1; the vertical conv runs on the input's width, close enough for ranking)."""
    k, c, r, s = conv.weight.shape
    return k * c * r * s if rank is None else rank * (c * r + k * s)


def _energy_rank(sv: torch.Tensor, energy: float) -> int:
    cum = torch.cumsum(sv ** 2, 0) / (sv ** 2).sum().clamp_min(1e-300)
    return int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype)).item()) + 1


def factorize_(model: nn.Module, config: SVDConfig, example=None,
               calibration: Iterable = (), targets: Optional[Iterable] = None, progress: bool = True) -> Report:
    """Replace eligible k×k convs of `model` (in place) by SpatialSVDConv2d pairs; see the module docstring. The
    report has one row per conv considered: rank, MACs per pixel before and after, and with `example` the measured
    ms before and after. With `config.psnr_budget_db`, `calibration` inputs and their `targets` (e.g. LR and HR
    images) score the model, and the most sensitive layers (PSNR per MAC saved) are restored until it is within the
    budget of the original (report.stats: psnr_before / psnr_all / psnr_after)."""
    unfold_live_(model)  # convert_'s live batch-norm folds: each conv is decomposed on its own
    if config.target_speedup is not None and example is None:
        raise ValueError("SVDConfig(target_speedup=...) measures each layer: pass example= (an input of the model)")
    calibration, targets = check_budget_args(config, calibration, targets)
    report = Report("factorize_")
    candidates = conv_candidates(model, config.filter_fn)
    inputs = layer_inputs(model, example, set(candidates)) if example is not None else {}

    def rule(name, child):
        if name not in candidates:
            return None
        why = ineligible(child, config.min_kernel, "factorized")
        if why:
            return why
        k, c, r, s = child.weight.shape
        sv = _svd(child)[1]
        full = sv.numel()
        if config.rank is not None:
            rank = min(config.rank, full)
        elif config.mac_ratio is not None:
            rank = max(1, int(config.mac_ratio * _macs_per_pixel(child) / (c * r + k * s)))
        else:
            rank = min(_energy_rank(sv, config.energy), full) if config.energy is not None else 1
        x = inputs.get(name)
        stats = dict(rank=rank, full_rank=full, macs_before=_macs_per_pixel(child))
        if config.target_speedup is not None:
            base = time_ms(child, x)
            best = None
            for cand in sorted({rank, *range(rank, full + 1, max(1, (full - rank) // 8 or 1))}, reverse=True):
                if base / time_ms(split(child, cand), x) >= config.target_speedup:
                    best = cand
                    break
            if best is None:
                return f"no rank >= {rank} reaches {config.target_speedup}x here"
            rank = stats["rank"] = best
        if _macs_per_pixel(child, rank) >= _macs_per_pixel(child):
            return f"rank {rank} of {full} would not save MACs"
        pair = split(child, rank)
        kept = float((sv[:rank] ** 2).sum() / (sv ** 2).sum())
        stats.update(macs_after=_macs_per_pixel(child, rank), energy_kept=kept)
        if x is not None:
            stats.update(ms_before=time_ms(child, x), ms_after=time_ms(pair, x))
        rule.stats[name] = stats
        rule.pairs[name] = (pair, child, stats["macs_before"] - stats["macs_after"])
        return pair

    rule.stats, rule.pairs = {}, {}
    return apply_decomposition(model, rule, report, "factorized", config, calibration, targets, progress, _describe)


def _describe(st: dict) -> str:
    return (f"rank {st['rank']}/{st['full_rank']}, MACs x{st['macs_after'] / st['macs_before']:.2f}, "
            f"energy {100 * st['energy_kept']:.1f} %")


def total_macs_ratio(report: Report) -> float:
    """MACs of the factorized layers after / before (per output pixel, summed)."""
    rows = [r for r in report.rows if r.action == "factorized"]
    before = sum(r.stats["macs_before"] for r in rows)
    return sum(r.stats["macs_after"] for r in rows) / before if before else math.nan
