"""Image quality: PSNR and SSIM, by default on the BT.601 luma (Y) channel as SR papers report them.

Inputs: torch tensors (N, C, H, W) or (C, H, W), or numpy arrays (H, W, C) or (H, W), with values in units of
``data_range`` (default: 255 when either input is uint8, as skimage infers it, else 1.0 for [0, 1] images). Both
inputs must have the same shape. Everything is computed in float64. Results are Python floats; for a batch the
per-image values are averaged.

- Y channel (``y_channel=True``, 3-channel RGB input): MATLAB ``rgb2ycbcr`` luma,
  Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in [0, 1] (so Y is in [16/255, 235/255]).
  One-channel input is taken as already Y.
- ``crop_border`` pixels are removed from every side before measuring (the SR convention: crop
  the scale factor).
- PSNR = 10 log10(data_range^2 / MSE); identical images give ``inf``.
- SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, population
  (co)variances, mean of the SSIM map over the positions where the window fits ("valid"), which is
  what ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` returns. Without the Y channel, channels are averaged.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "rgb_to_y"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _to_nchw(x, name: str) -> torch.Tensor:
    """Tensor (N,C,H,W)/(C,H,W) or numpy (H,W,C)/(H,W) -> float64 tensor (N,C,H,W) on the CPU
    or the tensor's device."""
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise ValueError(f"{name}: numpy images must be (H, W, C) or (H, W), got shape {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].to(torch.float64)
    if isinstance(x, torch.Tensor):
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4:
            raise ValueError(f"{name}: tensors must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
        return x.detach().to(torch.float64)
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def rgb_to_y(x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """BT.601 luma of an RGB tensor (N, 3, H, W) in units of data_range -> (N, 1, H, W), same units."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects (N, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():  # integer weights would truncate to 65 / 128 / 24
        x = x.to(torch.float64)
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    y01 = (16.0 + (x / data_range * w).sum(1, keepdim=True)) / 255.0
    return y01 * data_range


def _data_range(a, b, data_range):
    """data_range as given, or inferred: 255 if either input is uint8 (8-bit values), else 1.0."""
    if data_range is not None:
        return data_range
    return 255.0 if any(getattr(x, "dtype", None) in (np.uint8, torch.uint8) for x in (a, b)) else 1.0


def _prepare(a, b, crop_border: int, y_channel: bool, data_range: float):
    a = _to_nchw(a, "a")
    b = _to_nchw(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        b = b.to(a.device)
    if not isinstance(crop_border, (int, np.integer)) or isinstance(crop_border, bool) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative int, got {crop_border!r}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    n, c, h, w = a.shape
    if n == 0 or h - 2 * crop_border <= 0 or w - 2 * crop_border <= 0:
        raise ValueError(f"nothing left to measure: shape {tuple(a.shape)} with crop_border={crop_border}")
    crop_border = int(crop_border)
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if c == 3:
            a, b = rgb_to_y(a, data_range), rgb_to_y(b, data_range)
        elif c != 1:
            raise ValueError(f"y_channel=True needs RGB (3 channels) or Y (1 channel) images, got {c} channels")
    return a, b


def psnr(a, b, crop_border: int = 0, y_channel: bool = True, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), averaged over the batch; ``inf`` when the
    images are identical (so also the batch mean when any pair is). data_range None: 255 for uint8 inputs, else
    1.0."""
    data_range = _data_range(a, b, data_range)
    a, b = _prepare(a, b, crop_border, y_channel, data_range)
    mse = (a - b).pow(2).flatten(1).mean(1)
    values = [math.inf if m == 0 else 10.0 * math.log10(data_range ** 2 / m) for m in mse.tolist()]
    return float(sum(values) / len(values))


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a, b, crop_border: int = 0, y_channel: bool = True, data_range: float | None = None) -> float:
    """Structural similarity (Gaussian 11x11 window, sigma 1.5, K1 0.01, K2 0.03), mean over the
    valid part of the SSIM map, over channels, then over the batch. data_range None: 255 for uint8 inputs, else
    1.0."""
    data_range = _data_range(a, b, data_range)
    a, b = _prepare(a, b, crop_border, y_channel, data_range)
    n, c, h, w = a.shape
    size = 11
    if h < size or w < size:
        raise ValueError(f"ssim needs images of at least {size}x{size} after cropping, got {h}x{w}")
    g = _gaussian_window(size, 1.5, a.device)
    # Separable Gaussian blur, applied per channel (depthwise) with no padding ("valid").
    gh = g.view(1, 1, size, 1).expand(c, 1, size, 1)
    gw = g.view(1, 1, 1, size).expand(c, 1, 1, size)

    def blur(x):
        return F.conv2d(F.conv2d(x, gh, groups=c), gw, groups=c)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s_map.flatten(1).mean(1).mean())
