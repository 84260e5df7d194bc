"""Training and evaluation sets made only of photos that ship inside installed packages (nothing is
downloaded at run time), degraded the standard way for ×4 SR: HR mod-cropped to 4, LR = MATLAB-style
bicubic ×1/4 with antialiasing (`bicubic_downscale`).

Train: scikit-image's colour photos (astronaut, chelsea, coffee, rocket, hubble_deep_field,
immunohistochemistry, stereo_motorcycle's left view, retina) and its greyscale photos as 3 channels.
Eval (never trained on): scikit-learn's `load_sample_images()` (china, flower).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .images import _array_to_tensor, bicubic_downscale, imresize, load_image, mod_crop

TRAIN_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                "stereo_motorcycle", "retina")
TRAIN_GREY = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel")
TRAIN_IMAGES = TRAIN_COLOUR + TRAIN_GREY
EVAL_IMAGES = ("china", "flower")
EVAL_CROP = 1024  # photo files are scored on their central crop of at most this many HR pixels a side


def photo_label(name) -> str:
    """How an eval photo is named in results: a file's stem, a bundled photo's name."""
    return Path(name).stem if _is_file(name) else str(name)


def photo_labels(names) -> list:
    """photo_label of each name, made unique: photos sharing a stem (s1/x.png and s2/x.png, or a file named like a
    bundled photo) are told apart by their folder, then by a count."""
    from collections import Counter

    labels = [photo_label(n) for n in names]
    clash = Counter(labels)
    labels = [f"{Path(n).parent.name}/{lab}" if clash[lab] > 1 and _is_file(n) else lab
              for n, lab in zip(names, labels)]
    clash, seen, out = Counter(labels), Counter(), []
    for lab in labels:
        seen[lab] += 1
        out.append(lab if clash[lab] == 1 else f"{lab}#{seen[lab]}")
    return out


def _is_file(name) -> bool:
    return not (isinstance(name, str) and name in TRAIN_IMAGES + EVAL_IMAGES) and Path(name).expanduser().is_file()


def _center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[1:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[:, top:top + size, left:left + size]


def _load_named(name: str) -> torch.Tensor:
    if name == "stereo_motorcycle":
        import skimage.data

        return _array_to_tensor(np.asarray(skimage.data.stereo_motorcycle()[0]))
    if name in EVAL_IMAGES:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as e:
            raise ImportError("the evaluation photos ship with scikit-learn: pip install scikit-learn") from e
        return _array_to_tensor(np.asarray(load_sample_image(f"{name}.jpg")))
    return load_image(name)


def sr_pair(name: str, scale: int = 4) -> tuple:
    """(LR, HR) for one photo (a bundled name or an image file; a file's central EVAL_CROP² crop, so multi-megapixel
    photos stay cheap to score): HR mod-cropped to `scale`, LR its bicubic ×1/scale, both 3×H×W in [0, 1]."""
    img = _load_named(name)
    if _is_file(name):
        img = _center_crop(img, EVAL_CROP)
    hr = mod_crop(img, scale).contiguous()
    lr = bicubic_downscale(hr, scale).clamp_(0, 1)
    return lr, hr


def _zoomed_pair(hr: torch.Tensor, zoom: float, scale: int) -> tuple:
    """(LR, HR) of an HR photo shrunk by `zoom` (MATLAB-style antialiased bicubic)."""
    hr = mod_crop(imresize(hr, zoom).clamp_(0, 1), scale).contiguous()
    return bicubic_downscale(hr, scale).clamp_(0, 1), hr


class PatchSampler:
    """Random aligned (LR p×p, HR 4p×4p) patch batches with random flips and 90° rotations.

    Each photo is equally likely (by area, retina and hubble_deep_field, both mostly flat black, would take
    almost half the draws). Within a photo, a fraction `detail` of patch positions is drawn in proportion to
    how much bicubic upscaling misses there (the window mean of |HR − bicubic(LR)|), the rest uniformly, so
    steps go to edges and texture, where SR has something to learn, without dropping flat regions.
    `zooms` adds each photo shrunk by these factors (antialiased bicubic, then degraded like the original) as
    further photos: a small set of photos then shows the model its textures at several densities, as a
    wide-angle shot of foliage or roof tiles would (a shrunk photo smaller than a patch is left out).
    `seed` + `rank` make the stream reproducible per process (distinct across DDP ranks).
    """

    def __init__(self, names=TRAIN_IMAGES, patch: int = 32, scale: int = 4, seed: int = 0, rank: int = 0,
                 detail: float = 0.5, zooms=()):
        if not 0.0 <= detail <= 1.0:
            raise ValueError(f"detail={detail} must lie in [0, 1] (0 = uniform positions)")
        if any(not 0.0 < z < 1.0 for z in zooms):
            raise ValueError(f"zooms={tuple(zooms)}: each must lie in (0, 1) (the photo shrunk by that factor)")
        if not isinstance(patch, int) or patch < 1:
            raise ValueError(f"patch must be a positive int (LR pixels), got {patch!r}")
        self.pairs = [sr_pair(n, scale) for n in names]
        if not self.pairs:
            raise ValueError("PatchSampler needs at least one photo name")
        # a shrunk photo too small to crop a patch from (or to downscale at all) is skipped
        zoomed = (_zoomed_pair(hr, z, scale) for z in zooms for _, hr in self.pairs[:len(names)]
                  if min(round(hr.shape[1] * z), round(hr.shape[2] * z)) >= scale * patch)
        self.pairs += [(lr, hr) for lr, hr in zoomed if min(lr.shape[1:]) >= patch]
        self.patch, self.scale = patch, scale
        self.pos_weights = [self._position_weights(lr, hr, detail) for lr, hr in self.pairs]
        self.gen = torch.Generator().manual_seed(seed * 1000 + rank)

    def _position_weights(self, lr: torch.Tensor, hr: torch.Tensor, detail: float) -> torch.Tensor:
        """Draw probability of each top-left LR position (flattened (h-p+1)·(w-p+1))."""
        p, s = self.patch, self.scale
        if lr.shape[1] < p or lr.shape[2] < p:
            raise ValueError(f"LR image {tuple(lr.shape[1:])} is smaller than the {p}x{p} patch")
        miss = (hr - imresize(lr, s).clamp(0, 1)).abs().mean(0, keepdim=True)  # 1×H×W
        miss = torch.nn.functional.avg_pool2d(miss, s)  # per LR pixel
        score = torch.nn.functional.avg_pool2d(miss, p, stride=1).flatten().double()
        uniform = torch.full_like(score, 1.0 / score.numel())
        return (1 - detail) * uniform + detail * score / score.sum().clamp_min(1e-12)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])

    def batch(self, size: int) -> tuple:
        p, s = self.patch, self.scale
        lrs, hrs = [], []
        for i in torch.randint(0, len(self.pairs), (size,), generator=self.gen).tolist():
            lr, hr = self.pairs[i]
            pos = int(torch.multinomial(self.pos_weights[i], 1, generator=self.gen))
            y, x = divmod(pos, lr.shape[2] - p + 1)
            a, b = lr[:, y:y + p, x:x + p], hr[:, s * y:s * (y + p), s * x:s * (x + p)]
            k = int(torch.randint(0, 8, (1,), generator=self.gen))  # dihedral group: 4 rotations × flip
            if k & 4:
                a, b = a.flip(-1), b.flip(-1)
            a, b = torch.rot90(a, k & 3, (1, 2)), torch.rot90(b, k & 3, (1, 2))
            lrs.append(a)
            hrs.append(b)
        return torch.stack(lrs), torch.stack(hrs)
