"""Training patches from any folders of photos (PNG, JPEG, WebP, BMP, TIFF; any size; DIV2K's layout included),
degraded like the bundled set: an HR crop, its MATLAB-style antialiased bicubic ×1/4 as LR.

    index = index_folders(["~/data/DIV2K"])            # once: paths and sizes from the files' headers
    sampler = FolderPatchSampler(index, patch=24)       # same interface as datasets.PatchSampler
    lr, hr = sampler.batch(16)                          # 16×3×24×24, 16×3×96×96

Photos are far too many and too large to hold decoded (a 4K photo is 144 MB as float), so the sampler keeps a
small cache of decoded photos (uint8) and draws each batch's patches from it, replacing one cached photo with
another every few batches: over a run every photo is seen, and a batch never waits for more than one decode.
Folders whose name marks them as low-resolution inputs (DIV2K's ``DIV2K_train_LR_bicubic``, ``LR``, ``X4``) are
skipped: only HR photos are training targets.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from .images import bicubic_downscale, read_image_file

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_LR_DIR = re.compile(r"(^|[_\-\s])(lr|x[2348])([_\-\s]|$)", re.IGNORECASE)
# HR margin around a patch before it is shrunk: the antialiased bicubic ×1/4 reads 8 HR pixels on each side of an
# output pixel, so a margin of 8 makes the LR patch exactly what shrinking the whole photo would give there.
MARGIN = 8


class DataError(ValueError):
    """A training folder is missing, empty or holds nothing usable (the message says which and why)."""


@dataclass(frozen=True)
class Entry:
    path: str
    width: int
    height: int


@dataclass
class Index:
    """The usable photos of some folders, and what was skipped and why."""

    entries: list
    skipped: list  # (path, reason)

    def summary(self) -> str:
        reasons: dict = {}
        for _, why in self.skipped:
            reasons[why.split(":")[0]] = reasons.get(why.split(":")[0], 0) + 1
        extra = "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) if reasons else ""
        pixels = sum(e.width * e.height for e in self.entries)
        return f"{len(self.entries)} photos, {pixels / 1e6:.0f} Mpixel{extra}"


def _is_lr_dir(part: str) -> bool:
    return bool(_LR_DIR.search(part))


def index_folders(dirs: Iterable, min_side: int = 128) -> Index:
    """Every image under `dirs` (recursively) at least `min_side` pixels on each side, read from its header only.

    Raises DataError for a folder that does not exist or when nothing usable is found; unreadable files, images
    too small and files in low-resolution folders are listed in `skipped`.
    """
    from PIL import Image, UnidentifiedImageError

    entries, skipped = [], []
    dirs = [Path(os.path.expanduser(str(d))) for d in dirs]
    if not dirs:
        raise DataError("no training folder given")
    for root in dirs:
        if not root.is_dir():
            raise DataError(f"training folder {str(root)!r} does not exist or is not a folder")
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in SUFFIXES or not path.is_file():
                continue
            if any(_is_lr_dir(p) for p in path.relative_to(root).parts[:-1]):
                skipped.append((str(path), "low-resolution folder"))
                continue
            try:
                with Image.open(path) as im:
                    w, h = im.size
                    im.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
                skipped.append((str(path), f"unreadable: {type(e).__name__}"))
                continue
            if min(w, h) < min_side:
                skipped.append((str(path), f"too small: {w}x{h} < {min_side}"))
                continue
            entries.append(Entry(str(path), w, h))
    if not entries:
        where = ", ".join(str(d) for d in dirs)
        why = f" ({len(skipped)} file(s) skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"no usable photos (PNG, JPEG, WebP, BMP, TIFF, each side >= {min_side} px) in {where}{why}")
    return Index(entries, skipped)


def load_rgb_uint8(path: str) -> torch.Tensor:
    """3×H×W uint8 (greyscale expanded, alpha dropped, 16-bit scaled down)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"):  # 8-bit: Pillow's conversion
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
    # 16-bit and 32-bit modes: Pillow's convert("RGB") clamps them to 255 (a white photo); scale them instead
    return read_image_file(Path(path)).mul_(255.0).round_().to(torch.uint8)


class FolderPatchSampler:
    """Random aligned (LR p×p, HR 4p×4p) patch batches from an `Index`, with random flips and 90° rotations.

    `cache` photos are held decoded; every `refresh` batches one of them is replaced by a photo drawn at random
    (by area: a 4K photo holds four times the patches of a 2K one). Each patch comes from a cached photo drawn
    uniformly; with probability `detail` the most textured of 4 candidate positions is kept (HR standard
    deviation), steering steps to edges and texture as PatchSampler does. `seed` + `rank` make the stream
    reproducible per process.
    """

    def __init__(self, index: Index, patch: int = 32, scale: int = 4, seed: int = 0, rank: int = 0,
                 detail: float = 0.5, cache: int = 8, refresh: int = 4):
        if not 0.0 <= detail <= 1.0:
            raise ValueError(f"detail={detail} must lie in [0, 1]")
        if cache < 1 or refresh < 1:
            raise ValueError(f"cache={cache} and refresh={refresh} must be positive")
        need = scale * patch + 2 * MARGIN
        self.entries = [e for e in index.entries if min(e.width, e.height) >= need]
        if not self.entries:
            raise DataError(f"no photo has both sides >= {need} px, the {scale * patch} px HR patch plus margins")
        self.patch, self.scale, self.detail, self.refresh = patch, scale, detail, refresh
        self.gen = torch.Generator().manual_seed(seed * 1000 + rank)
        areas = torch.tensor([e.width * e.height for e in self.entries], dtype=torch.float64)
        self.weights = areas / areas.sum()
        self.batches = 0
        self.cached: list = []  # (entry index, decoded 3×H×W uint8)
        for _ in range(min(cache, len(self.entries))):
            self._load(self._draw_photo())

    def _draw_photo(self) -> int:
        return int(torch.multinomial(self.weights, 1, generator=self.gen))

    def _load(self, i: int, slot: Optional[int] = None) -> None:
        while True:
            try:
                img = load_rgb_uint8(self.entries[i].path)
                break
            except (OSError, ValueError, SyntaxError) as e:  # e.g. a truncated JPEG, which the index's verify passes
                warnings.warn(f"skipping {self.entries[i].path}: it cannot be decoded ({e})", stacklevel=2)
                self.weights[i] = 0.0
                if not self.weights.sum() > 0:
                    raise DataError("none of the training photos can be decoded") from e
                i = self._draw_photo()
        if slot is None:
            self.cached.append((i, img))
        else:
            self.cached[slot] = (i, img)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "batches": self.batches, "cached": [i for i, _ in self.cached],
                "paths": [self.entries[i].path for i, _ in self.cached]}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.batches = state["batches"]
        self.cached = []
        for i, path in zip(state["cached"], state["paths"]):
            if i >= len(self.entries) or self.entries[i].path != path:
                raise DataError(f"the training folders changed since this run started ({path!r} moved or is gone); "
                                "resume with the same --data folders, or start a new run")
            self._load(i)

    def _crop(self, img: torch.Tensor) -> torch.Tensor:
        """One HR crop (with margins) of a cached photo, as float in [0, 1]."""
        side = self.scale * self.patch + 2 * MARGIN
        h, w = img.shape[1:]
        tries = 4 if float(torch.rand((), generator=self.gen)) < self.detail else 1
        best, best_std = None, -1.0
        for _ in range(tries):
            y = int(torch.randint(0, h - side + 1, (1,), generator=self.gen))
            x = int(torch.randint(0, w - side + 1, (1,), generator=self.gen))
            crop = img[:, y:y + side, x:x + side]
            std = float(crop.float().std()) if tries > 1 else 0.0
            if std > best_std:
                best, best_std = crop, std
        return best.float().div_(255.0)

    def batch(self, size: int) -> tuple:
        if self.batches and self.batches % self.refresh == 0 and len(self.entries) > len(self.cached):
            slot = int(torch.randint(0, len(self.cached), (1,), generator=self.gen))
            self._load(self._draw_photo(), slot)
        self.batches += 1
        p, s, m = self.patch, self.scale, MARGIN
        lrs, hrs = [], []
        for _ in range(size):
            _, img = self.cached[int(torch.randint(0, len(self.cached), (1,), generator=self.gen))]
            crop = self._crop(img)
            lr = bicubic_downscale(crop, s).clamp_(0, 1)[:, m // s:m // s + p, m // s:m // s + p]
            hr = crop[:, m:m + s * p, m:m + s * p]
            k = int(torch.randint(0, 8, (1,), generator=self.gen))  # dihedral group: 4 rotations × flip
            if k & 4:
                lr, hr = lr.flip(-1), hr.flip(-1)
            lrs.append(torch.rot90(lr, k & 3, (1, 2)))
            hrs.append(torch.rot90(hr, k & 3, (1, 2)))
        return torch.stack(lrs).contiguous(), torch.stack(hrs).contiguous()

