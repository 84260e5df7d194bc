"""Test images and the standard SR degradation (MATLAB-style bicubic downscaling).

- ``load_image(name_or_path)``: a 3 x H x W float32 tensor in [0, 1] from a photo bundled with
  scikit-image (``list_images()``) or from an image file (read with Pillow).
- ``imresize(img, scale)``: MATLAB ``imresize(img, scale, 'bicubic')`` on float data: Keys cubic
  kernel with a = -0.5; when shrinking (scale < 1) the kernel is widened by 1/scale (antialiasing);
  borders are handled by mirroring (symmetric padding), as MATLAB does. Output is not clamped.
- ``bicubic_downscale(img, scale=4)``: ``imresize(img, 1/scale)`` with output size floor(H/scale)
  x floor(W/scale) — the usual way LR inputs of SR benchmarks are made (after ``mod_crop``).
- ``mod_crop(img, scale)``: crop the bottom/right so H and W are multiples of scale.

Difference from ``F.interpolate(mode="bicubic", antialias=True)``: PyTorch (like PIL) uses the same
a = -0.5 kernel widened by the scale factor and the same sample positions, so interiors agree to
rounding; at the borders PyTorch drops the taps that fall outside the image and renormalises, while
MATLAB mirrors the image, so the outermost ~2 output pixels differ slightly. (Without
``antialias=True`` PyTorch's bicubic uses a = -0.75 and no widening, which is a different filter.)
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_image", "list_images", "imresize", "bicubic_downscale", "mod_crop", "cubic_kernel"]

# Photos shipped inside scikit-image's package (no download needed). Greyscale ones are expanded
# to 3 channels, RGBA ones ("logo") lose alpha.
_SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina",
    "rocket", "text",
)


def list_images() -> list[str]:
    """Names accepted by ``load_image`` (photos bundled with scikit-image)."""
    return list(_SKIMAGE_PHOTOS)


def _array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC array (bool, uint8, uint16, float) -> 3xHxW float32 tensor in [0, 1]."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"unsupported integer image dtype {arr.dtype}; convert it to uint8 or float first")
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {arr.shape}")
    c = arr.shape[2]
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 2:  # greyscale + alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif c >= 4:  # RGBA: drop alpha
        arr = arr[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).clamp_(0.0, 1.0)


def float_pixels(arr: np.ndarray) -> np.ndarray:
    """A float ("F") or 32-bit integer ("I") image's pixels as float32 in [0, 1]: values already in [0, 1] kept, else
    read as 8-bit (up to 255) or 16-bit (up to 65535) levels. Pillow's convert would clip them to 0-255."""
    a = arr.astype(np.float32)
    top = float(np.nanmax(a)) if a.size else 0.0
    scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    return np.clip(np.nan_to_num(a / scale), 0.0, 1.0)


def read_image_file(path: Path) -> torch.Tensor:
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is a dependency
        raise ImportError("loading image files needs Pillow: pip install pillow") from e
    from PIL import ImageOps

    with Image.open(path) as im:
        try:
            im = ImageOps.exif_transpose(im)  # the camera's orientation tag, as upscale reads it
        except Exception:  # noqa: BLE001 - a broken EXIF block must not stop the load
            pass
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(im).astype(np.uint16)
        elif im.mode in ("F", "I"):
            arr = float_pixels(np.asarray(im))
        elif im.mode in ("RGB", "L", "RGBA", "LA"):
            arr = np.asarray(im)
        else:  # palette, CMYK, YCbCr, 1-bit, 32-bit int/float: let Pillow make RGB of it
            arr = np.asarray(im.convert("RGB"))
    return _array_to_tensor(arr)


def load_image(name_or_path: str | os.PathLike) -> torch.Tensor:
    """A 3 x H x W float32 RGB tensor in [0, 1].

    ``name_or_path`` is a name from ``list_images()`` (e.g. "astronaut", "chelsea", "coffee",
    "rocket") or the path of an image file Pillow can read (PNG, JPEG, BMP, TIFF, ...).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and text in _SKIMAGE_PHOTOS:
        try:
            import skimage.data
        except ImportError as e:
            raise ImportError(f"the bundled image {text!r} comes from scikit-image: pip install scikit-image, "
                              "or pass the path of an image file instead") from e
        return _array_to_tensor(np.asarray(getattr(skimage.data, text)()))
    path = Path(text).expanduser()
    if path.is_file():
        return read_image_file(path)
    raise FileNotFoundError(f"{text!r} is neither a bundled image name nor an existing file; use one of "
                            f"{list_images()} or pass the path of an image file")


def mod_crop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom rows and right columns of ``img`` (..., H, W) so that H and W are multiples
    of ``scale`` (a view, no copy)."""
    if not isinstance(img, torch.Tensor) or img.dim() < 2:
        raise ValueError("img must be a tensor with at least 2 dims (..., H, W)")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def cubic_kernel(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (MATLAB ``imresize`` uses a = -0.5); support [-2, 2]."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def _resize_matrix(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """Dense (out_len x in_len) float64 matrix M with out = M @ in along one axis.

    Output pixel j (0-based) samples the input at u = (j + 0.5) / scale - 0.5 (pixel centres
    aligned, as MATLAB does). When shrinking, the kernel is stretched by 1/scale (its support
    grows to 4/scale taps) so it low-passes before decimating. Weights of each row are normalised
    to sum to 1; taps past the border are folded back by mirroring (index -1 -> 0, in_len -> in_len-1).
    """
    stretch = 1.0 / scale if scale < 1 else 1.0
    half = 2.0 * stretch  # the kernel's half-support, in input pixels
    u = (torch.arange(out_len, dtype=torch.float64) + 0.5) / scale - 0.5
    left = torch.floor(u - half)
    taps = int(math.ceil(2 * half)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    weights = cubic_kernel((u[:, None] - idx) / stretch)
    weights = weights / weights.sum(1, keepdim=True)
    # Symmetric padding: mirror indices into [0, in_len) (period 2 * in_len).
    idx = idx.long() % (2 * in_len)
    idx = torch.where(idx >= in_len, 2 * in_len - 1 - idx, idx)
    m = torch.zeros(out_len, in_len, dtype=torch.float64)
    m.scatter_add_(1, idx, weights)
    return m


def imresize(img: torch.Tensor, scale: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """MATLAB-style bicubic resize of ``img`` (..., H, W) by ``scale`` (< 1 shrinks, with
    antialiasing). Output size is ``size`` or (ceil(H*scale), ceil(W*scale)) as in MATLAB.
    Computed in float64, returned in img's floating dtype (float32 for integer input); not clamped."""
    if not isinstance(img, torch.Tensor) or img.dim() < 2:
        raise ValueError("img must be a tensor with at least 2 dims (..., H, W)")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    h, w = img.shape[-2:]
    if size is None:
        size = (math.ceil(h * scale), math.ceil(w * scale))
    oh, ow = size
    if oh < 1 or ow < 1 or h < 1 or w < 1:
        raise ValueError(f"cannot resize an image of size {h}x{w} to {oh}x{ow}")
    out_dtype = img.dtype if img.is_floating_point() else torch.float32
    mh = _resize_matrix(h, oh, scale).to(img.device)
    mw = _resize_matrix(w, ow, scale).to(img.device)
    x = img.to(torch.float64)
    # Separable: rows then columns (the order does not matter for a linear resize).
    out = mh @ x @ mw.transpose(0, 1)
    return out.to(out_dtype)


def bicubic_downscale(img: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """Shrink ``img`` (..., H, W) by the integer factor ``scale`` with MATLAB's antialiased bicubic
    ``imresize(img, 1/scale)``; output (..., floor(H/scale), floor(W/scale))."""
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if not isinstance(img, torch.Tensor) or img.dim() < 2:
        raise ValueError("img must be a tensor with at least 2 dims (..., H, W)")
    h, w = img.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"image {h}x{w} is smaller than the scale factor {scale}")
    return imresize(img, 1.0 / scale, size=(h // scale, w // scale))
