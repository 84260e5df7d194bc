"""x4 super-resolution of whole images, tile by tile, with the SFTNet models (`sft-kernels upscale`).

- ``upscale_image(model, img, tile=0, overlap=8)``: runs a x4 model on a 3 x H x W image in [0, 1].
  With ``tile > 0`` the LR image is cut into a grid of tiles of at most ``tile`` x ``tile`` pixels;
  each tile is run with ``overlap`` extra LR pixels of context on every side where the image has them,
  and only the tile's own (central) part of the output is kept. One tile is in flight at a time, so the
  model's activation memory is bounded by the tile size, not the image size. When ``overlap`` is at
  least the model's receptive-field radius (in LR pixels) the result equals the whole-image result up
  to float rounding; SFTNet's exact radius is ``2 * num_blocks + 4`` LR pixels (trunk 2 per block,
  head and closing conv 1 each, upsampling tail ~2), its *effective* radius is much smaller, and
  the default overlap of 8 leaves no visible seams.
- ``upscale_file(in_path, out_path, ...)``: reads any image Pillow reads, upscales it and writes the
  result with Pillow, keeping its kind: greyscale (L, LA, 16-bit I;16) in -> greyscale out (the luma
  of the upscaled 3-channel replica; 16-bit stays 16-bit where the format can store it); RGBA/LA in ->
  the colour goes through the model, the alpha channel is upscaled with bicubic interpolation and
  written back; palette, CMYK, YCbCr, ... are converted to RGB (palette images with transparency to
  RGBA). EXIF orientation is applied; the ICC profile is kept. The output is assembled tile by tile
  directly in its final 8/16-bit form.
- ``load_model(name_or_path)``: a shipped model by name (``sft_kernels.models.pretrained.shipped()``) or any
  SFTNet checkpoint (.safetensors / .pth / .pt; architecture read off its keys).

Every failure a user can cause (missing or unreadable image, a file that is not an image, corrupt or
mismatched weights, an unknown model name, an output format that cannot hold the image) raises
ValueError / FileNotFoundError / RuntimeError (``sft_kernels.models.checkpoint.WeightsError``) with a one-line
message.
"""
from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import float_pixels

__all__ = ["upscale_image", "upscale_file", "load_model", "tile_grid", "receptive_radius", "SCALE"]

SCALE = 4  # SFTNet is a x4 model; upscale_image checks what the model actually returns
MIN_SIDE = 8  # LR pixels a model pass gets at least per side (smaller images or tiles: edge-replicated)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")
PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------------------- tiling
def tile_grid(height: int, width: int, tile: int) -> list:
    """LR tiles ``(y0, y1, x0, x1)`` covering an ``height`` x ``width`` image in row-major order.

    ``tile == 0`` gives one tile (the whole image). Otherwise each axis is split into
    ``ceil(size / tile)`` nearly equal parts (sizes differ by at most 1, none larger than ``tile``),
    so no thin sliver is left at the right/bottom edge.
    """
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 0:
        raise ValueError(f"tile must be an int >= 0 (0 = whole image), got {tile!r}")

    def cuts(size):
        n = 1 if tile == 0 else max(1, math.ceil(size / tile))
        return [(i * size // n, (i + 1) * size // n) for i in range(n)]

    return [(y0, y1, x0, x1) for y0, y1 in cuts(height) for x0, x1 in cuts(width)]


def receptive_radius(model: nn.Module) -> Optional[int]:
    """The exact receptive-field radius of an SFTNet in LR pixels (an upper bound for the overlap that
    makes tiled == untiled), or None for other models."""
    from ..models import SFTNet

    if isinstance(model, SFTNet):
        # conv0 (1) + 2 per residual block + closing trunk conv (1) + tail: conv at 1x (1), conv at 2x
        # (1/2), two convs at 4x (2/4), rounded up.
        return 2 * model.num_blocks + 2 + 2
    return None


def _model_device_dtype(model: nn.Module):
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _check_image(img) -> None:
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"img must be a torch.Tensor (3, H, W) in [0, 1], got {type(img).__name__}")
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"img must have shape (3, H, W), got {tuple(img.shape)}")
    if not img.is_floating_point():
        raise TypeError(f"img must be a floating-point tensor with values in [0, 1], got {img.dtype}")
    if img.shape[1] == 0 or img.shape[2] == 0:
        raise ValueError(f"img must be non-empty, got shape {tuple(img.shape)}")


def _prepare_model(model: nn.Module, backend: Optional[str]) -> nn.Module:
    """``backend`` None: the model as given. A backend name: a converted copy (the caller's model is left
    alone; convert_ checks the name and that the backend can run here). "torch": plain PyTorch (reverted copy
    if the model was converted)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if backend is None:
        return model
    from ..transforms import convert_, revert_

    model = copy.deepcopy(model)
    if backend == "torch":
        revert_(model)
    else:
        convert_(model, backend=backend)
    return model


def _check_overlap(overlap) -> None:
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ValueError(f"overlap must be an int >= 0, got {overlap!r}")


def _iter_tiles(model: nn.Module, img: torch.Tensor, tile: int, overlap: int,
                progress: bool) -> Iterator[tuple]:
    """Yields ``((y0, y1, x0, x1), out)`` per LR tile: ``out`` is the model's output for that tile's own
    region (its overlap cropped away), shape (3, s*(y1-y0), s*(x1-x0)), on img's device, float32."""
    _check_overlap(overlap)
    _, h, w = img.shape
    tiles = tile_grid(h, w, tile)
    device, dtype = _model_device_dtype(model)
    if not dtype.is_floating_point:
        dtype = torch.float32
    it = tiles
    if progress and len(tiles) > 1:
        from tqdm import tqdm

        it = tqdm(tiles, desc="upscaling", unit="tile", leave=False)
    for y0, y1, x0, x1 in it:
        py0, py1 = max(0, y0 - overlap), min(h, y1 + overlap)
        px0, px1 = max(0, x0 - overlap), min(w, x1 + overlap)
        x = img[:, py0:py1, px0:px1].to(device=device, dtype=dtype).unsqueeze(0)
        # a region under MIN_SIDE pixels is edge-replicated to it (cropped again below): the convs' zero padding
        # would otherwise reach every pixel and darken it (a 1×1 grey image came out at a fifth of its value)
        gh, gw = max(0, MIN_SIDE - (py1 - py0)), max(0, MIN_SIDE - (px1 - px0))  # rows / columns missing
        pt, pl = gh // 2, gw // 2
        if gh or gw:
            x = F.pad(x, (pl, gw - pl, pt, gh - pt), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            y = model(x)
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[1] != 3:
            raise ValueError(f"the model must return (1, 3, sH, sW), got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        hh, ww = x.shape[2], x.shape[3]
        s = y.shape[2] // hh
        if s < 1 or y.shape[2] != s * hh or y.shape[3] != s * ww:
            raise ValueError(f"the model must scale its input by an integer factor: "
                             f"{hh}x{ww} -> {y.shape[2]}x{y.shape[3]}")
        oy, ox = s * (y0 - py0 + pt), s * (x0 - px0 + pl)
        out = y[0, :, oy:oy + s * (y1 - y0), ox:ox + s * (x1 - x0)]
        yield (y0, y1, x0, x1), out.to(device=img.device, dtype=torch.float32)


def upscale_image(model: nn.Module, img: torch.Tensor, tile: int = 0, overlap: int = 8,
                  backend: Optional[str] = None, progress: bool = True) -> torch.Tensor:
    """Upscale ``img`` (3, H, W) in [0, 1] with the x4 ``model``: returns (3, 4H, 4W), not clamped,
    on img's device, in img's dtype.

    ``tile``: LR tile size (0 = the whole image in one pass). Each tile is run with ``overlap`` LR
    pixels of context on each side (where the image has them) and only its own part of the output is
    kept, one tile at a time. ``backend``: None runs the model as given; a backend name (see
    ``sft_kernels.backends.available()``) runs a copy converted with ``convert_(model, backend=...)``;
    "torch" a plain-PyTorch copy. ``progress``: a tqdm bar over the tiles when there is more than one.
    Runs under ``torch.no_grad()`` on the model's device; tiles are moved there and back.
    """
    _check_image(img)
    model = _prepare_model(model, backend)
    _, h, w = img.shape
    out = None
    for (y0, y1, x0, x1), t in _iter_tiles(model, img, tile, overlap, progress):
        if out is None:
            s = t.shape[1] // (y1 - y0)
            out = torch.empty(3, s * h, s * w, dtype=img.dtype, device=img.device)
        s = out.shape[1] // h
        out[:, s * y0:s * y1, s * x0:s * x1] = t
    return out


# ------------------------------------------------------------------------------------------------ models
def load_model(name_or_path: Union[str, os.PathLike, nn.Module] = "teacher") -> nn.Module:
    """A shipped model by name or any SFTNet checkpoint by path, in eval mode (see
    ``sft_kernels.models.pretrained.resolve_model``)."""
    from ..models.pretrained import resolve_model

    return resolve_model(name_or_path)


# ------------------------------------------------------------------------------------------------ files
_GREY_MODES = ("1", "L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_RGB_MODES = ("RGB",)
_ALPHA_CONVERT = ("RGBa", "La", "PA")  # premultiplied / palette+alpha -> straight RGBA or LA


def _read_image(path: Path):
    """(pixels 3xHxW float32 [0,1], alpha HxW float32 or None, out_mode, icc) from an image file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    text = str(path)
    if not path.exists():
        raise FileNotFoundError(f"input image {text!r} does not exist")
    if path.is_dir():
        raise ValueError(f"cannot read image {text!r}: it is a directory")
    try:
        with Image.open(path) as im:
            im.load()  # decodes the pixels, so truncated data shows up here
            try:
                im = ImageOps.exif_transpose(im)  # camera orientation tag
            except Exception:  # noqa: BLE001 - a broken EXIF block must not stop the upscale
                pass
            icc = im.info.get("icc_profile")
            mode = im.mode
            if mode in _ALPHA_CONVERT:
                im = im.convert("LA" if mode == "La" else "RGBA")
            elif mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode not in _GREY_MODES + _RGB_MODES + ("RGBA", "LA"):
                im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
            mode = im.mode
            arr = np.asarray(im)
    except UnidentifiedImageError:
        raise ValueError(f"cannot read image {text!r}: not an image file or unsupported format") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"cannot read image {text!r}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated / corrupt data, permissions
        raise ValueError(f"cannot read image {text!r}: the file is corrupt or unreadable "
                         f"({type(e).__name__}: {str(e)[:120]})") from None
    if arr.size == 0:
        raise ValueError(f"cannot read image {text!r}: it has no pixels")
    alpha = None
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        grey = torch.from_numpy(np.clip(arr.astype(np.float32), 0, 65535) / 65535.0)
        rgb, out_mode = grey.expand(3, -1, -1).contiguous(), "I;16"
    elif mode in ("F", "I"):  # float or 32-bit levels (convert would clip them to 0-255): written as 16-bit grey
        rgb, out_mode = torch.from_numpy(float_pixels(arr)).expand(3, -1, -1).contiguous(), "I;16"
    elif mode == "L":
        rgb, out_mode = torch.from_numpy(arr.astype(np.float32) / 255.0).expand(3, -1, -1).contiguous(), "L"
    elif mode == "LA":
        a = arr.astype(np.float32) / 255.0
        rgb = torch.from_numpy(np.ascontiguousarray(a[:, :, 0])).expand(3, -1, -1).contiguous()
        alpha, out_mode = torch.from_numpy(np.ascontiguousarray(a[:, :, 1])), "LA"
    elif mode == "RGBA":
        a = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
        rgb, alpha, out_mode = a[:3].contiguous(), a[3].contiguous(), "RGBA"
    else:  # RGB
        rgb, out_mode = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous(), "RGB"
    return rgb, alpha, out_mode, icc


def _output_format(out_path: Path, out_mode: str) -> tuple:
    """(Pillow format, mode to write) for out_path; checked before any work is done."""
    import io

    from PIL import Image

    text = str(out_path)
    parent = out_path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {text!r}: directory {str(parent)!r} does not exist")
    if out_path.is_dir():
        raise ValueError(f"cannot write {text!r}: it is a directory")
    fmt = Image.registered_extensions().get(out_path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write {text!r}: unknown or read-only image file extension "
                         f"{out_path.suffix!r}; use .png, .jpg, .webp, .tif or .bmp")

    def can_write(mode):
        try:
            Image.new(mode, (1, 1)).save(io.BytesIO(), format=fmt)
            return True
        except Exception:  # noqa: BLE001 - any encoder refusal means "this format cannot hold this mode"
            return False

    if can_write(out_mode):
        return fmt, out_mode
    if out_mode == "I;16" and can_write("L"):
        return fmt, "L"  # 16-bit greyscale into an 8-bit-only format
    if out_mode in ("RGBA", "LA"):
        raise ValueError(f"cannot write {text!r}: the input has an alpha channel and {fmt} cannot store one; "
                         "write a .png, .webp or .tif instead")
    raise ValueError(f"cannot write {text!r}: {fmt} cannot store a {out_mode} image")


def _quantize(x: torch.Tensor, bits: int):
    top = 255.0 if bits == 8 else 65535.0
    return (x.clamp(0, 1) * top).round_().numpy().astype(np.uint8 if bits == 8 else np.uint16)


def upscale_file(in_path: PathLike, out_path: PathLike, model_name_or_path="teacher",
                 backend: Optional[str] = None, tile: int = 0, device: Union[str, torch.device] = "cpu",
                 overlap: int = 8, progress: bool = True, fp32_precision: str = "ieee") -> dict:
    """Read ``in_path``, upscale it x4 and write ``out_path`` (format from its extension).

    ``model_name_or_path``: a shipped model name, a checkpoint path or an ``nn.Module``. ``backend``: the
    backend the model's convs are converted to with ``convert_`` (None: convert_'s automatic choice;
    "torch": plain PyTorch, no conversion). ``tile``/``overlap``: as in ``upscale_image``. ``device``:
    where the model runs (tiles are moved there one at a time; the output is assembled on the CPU).
    ``fp32_precision``: convert_'s ("bf16": convs computed in bfloat16 on AMX or AVX512-BF16 CPUs).
    Returns a summary dict (sizes, modes, tiles).
    """
    from PIL import Image

    in_path, out_path = Path(os.fspath(in_path)).expanduser(), Path(os.fspath(out_path)).expanduser()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} asked for, but no CUDA GPU is available here")
    rgb, alpha, out_mode, icc = _read_image(in_path)
    fmt, out_mode = _output_format(out_path, out_mode)
    tiles = tile_grid(rgb.shape[1], rgb.shape[2], tile)  # validates tile and overlap before loading the model
    _check_overlap(overlap)

    if isinstance(model_name_or_path, nn.Module):  # never convert the caller's module in place
        model = copy.deepcopy(model_name_or_path).eval()
    else:
        model = load_model(model_name_or_path)
    model = model.to(dev)
    if backend == "torch":
        from ..transforms import revert_

        revert_(model)
    else:
        from ..transforms import convert_

        convert_(model, backend=backend, fp32_precision=fp32_precision)

    h, w = rgb.shape[1:]
    bits = 16 if out_mode == "I;16" else 8
    grey = out_mode in ("L", "LA", "I;16")
    buf = None
    luma = torch.tensor(_LUMA).view(3, 1, 1)
    for (y0, y1, x0, x1), t in _iter_tiles(model, rgb, tile, overlap, progress):
        if buf is None:
            s = t.shape[1] // (y1 - y0)
            shape = (s * h, s * w) if grey else (s * h, s * w, 3)
            buf = np.empty(shape, dtype=np.uint16 if bits == 16 else np.uint8)
        if grey:
            buf[s * y0:s * y1, s * x0:s * x1] = _quantize((t * luma).sum(0), bits)
        else:
            buf[s * y0:s * y1, s * x0:s * x1] = _quantize(t.permute(1, 2, 0), bits)
    del model

    if alpha is not None:
        a = F.interpolate(alpha[None, None], size=buf.shape[:2], mode="bicubic", align_corners=False)[0, 0]
        a = _quantize(a, 8)
        buf = np.dstack([buf[:, :, None] if grey else buf, a])
    data = buf.astype("<u2") if out_mode == "I;16" else buf  # Pillow's I;16 is little-endian
    im = Image.frombytes(out_mode, (buf.shape[1], buf.shape[0]), np.ascontiguousarray(data).tobytes())
    params = {"icc_profile": icc} if icc and fmt in ("PNG", "JPEG", "WEBP", "TIFF") else {}
    if fmt == "JPEG":
        params["quality"] = 95
    try:
        im.save(out_path, format=fmt, **params)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot write {str(out_path)!r}: {type(e).__name__}: {str(e)[:160]}") from None
    return dict(input=str(in_path), output=str(out_path), in_size=(w, h), out_size=im.size, mode=out_mode,
                format=fmt, tiles=len(tiles))

