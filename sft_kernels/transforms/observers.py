"""Activation observers for int8 calibration: each sees a layer's float inputs and proposes a per-tensor affine uint8
range (scale, zero point), with 0 exactly representable (zero padding must quantize to the zero point).

    minmax      the range seen (robust for post-ReLU maps; one outlier widens every step)
    percentile  clip both tails at `percentile` (e.g. 99.99) of the values
    mse         the clip range minimising the quantize-dequantize squared error over the values (SR maps are
                long-tailed and asymmetric: this usually wins)

Observers keep the exact min / max and a histogram of every value seen (`bins` bins over the running range,
re-binned when the range grows), so the tails weigh what they weigh whatever the calibration set's size, and the
percentile and MSE searches cost the same for any amount of data.
"""
from __future__ import annotations

import math

import torch

OBSERVERS = ("minmax", "percentile", "mse")


def affine_qparams(lo: float, hi: float) -> tuple:
    """(scale, zero_point) of uint8 covering [lo, hi] widened to hold 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        return 1.0, 0
    scale = (hi - lo) / 255.0
    zp = int(min(255, max(0, round(-lo / scale))))
    return float(scale), zp


def fake_quantize(x: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    return (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale


class Observer:
    def __init__(self, kind: str = "mse", percentile: float = 99.99, bins: int = 2048):
        if kind not in OBSERVERS:
            raise ValueError(f"observer must be one of {OBSERVERS}, got {kind!r}")
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must lie in (50, 100], got {percentile}")
        self.kind, self.percentile, self.bins = kind, percentile, bins
        self.lo, self.hi, self.seen = math.inf, -math.inf, 0
        self.hist = None  # float64 counts over [lo, hi]

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().float().reshape(-1)
        if x.numel() == 0:
            return
        lo, hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        if hi <= lo:
            hi = lo + 1e-6
        if self.kind != "minmax":
            if self.hist is not None and (lo, hi) != (self.lo, self.hi):  # re-bin what was seen onto the new range
                edges = torch.linspace(self.lo, self.hi, self.bins + 1, dtype=torch.float64)
                centers = (edges[:-1] + edges[1:]) / 2
                self.hist = torch.histogram(centers, self.bins, range=(lo, hi), weight=self.hist).hist
            new = torch.histc(x.cpu(), self.bins, lo, hi).double()
            self.hist = new if self.hist is None else self.hist + new
        self.lo, self.hi = lo, hi
        self.seen += x.numel()

    def _centers(self) -> torch.Tensor:
        edges = torch.linspace(self.lo, self.hi, self.bins + 1, dtype=torch.float64)
        return (edges[:-1] + edges[1:]) / 2

    def qparams(self) -> tuple:
        if self.seen == 0:
            raise RuntimeError("this layer saw no calibration data: did the calibration inputs reach it?")
        if self.kind == "minmax":
            return affine_qparams(self.lo, self.hi)
        if self.kind == "percentile" and self.percentile < 100:
            cdf, c, q = torch.cumsum(self.hist, 0) / self.hist.sum(), self._centers(), self.percentile / 100
            idx = torch.searchsorted(cdf, torch.tensor([1 - q, q], dtype=cdf.dtype)).clamp(max=self.bins - 1)
            return affine_qparams(float(c[idx[0]]), float(c[idx[1]]))
        if self.kind == "percentile":
            return affine_qparams(self.lo, self.hi)
        return self._mse()

    def _mse(self) -> tuple:
        """Grid search of the clip range (upper and lower ends shrunk independently: asymmetric maps), the error of
        each candidate summed over the histogram's bins."""
        c, w = self._centers(), self.hist / self.hist.sum()
        lo0, hi0 = min(self.lo, 0.0), max(self.hi, 0.0)
        best, best_err = affine_qparams(lo0, hi0), math.inf
        fracs = [1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.12, 0.06]
        tried = set()
        for fh in fracs:
            for fl in fracs:
                scale, zp = affine_qparams(lo0 * fl, hi0 * fh)
                if (scale, zp) in tried:
                    continue
                tried.add((scale, zp))
                err = float((w * (fake_quantize(c, scale, zp) - c) ** 2).sum())
                if err < best_err:
                    best, best_err = (scale, zp), err
        return best
