"""`sft-kernels quantize`: an int8 SFTNet from a float one, calibrated on photos it was not evaluated on, within a
PSNR budget, written as a checkpoint with a model card (loadable by path, or shipped as "<name>-int8")."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Optional

import torch

from .. import convert_
from ..data.images import bicubic_downscale
from ..transforms.quantize import Int8Config, quantize_


def calibration_pairs(dirs: Optional[list], crops: int = 8, hr_size: int = 256, seed: int = 0) -> tuple:
    """(LR crops, HR crops): `crops` HR crops of hr_size² from the photos under `dirs` (or the bundled training
    photos), one per photo in turn, and their antialiased bicubic ×1/4."""
    gen = torch.Generator().manual_seed(seed)
    if dirs:
        from ..data.folders import index_folders, load_rgb_uint8

        entries = index_folders(dirs, min_side=hr_size).entries
        photos = [load_rgb_uint8(e.path).float().div(255) for e in entries[:crops]]
    else:
        from ..data.datasets import TRAIN_COLOUR, _load_named

        photos = [_load_named(n) for n in TRAIN_COLOUR[:crops]]
        photos = [p for p in photos if min(p.shape[-2:]) >= hr_size]
    if not photos:
        raise ValueError(f"no calibration photo is at least {hr_size} pixels on each side")
    lrs, hrs = [], []
    for i in range(crops):
        p = photos[i % len(photos)]
        h, w = p.shape[-2:]
        y = int(torch.randint(0, h - hr_size + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - hr_size + 1, (1,), generator=gen))
        hr = p[..., y:y + hr_size, x:x + hr_size].reshape(1, 3, hr_size, hr_size)
        lrs.append(bicubic_downscale(hr, 4).clamp(0, 1))
        hrs.append(hr)
    return lrs, hrs


def quantize_model(model, calib_dirs=None, crops: int = 8, budget: Optional[float] = 0.1, observer: str = "mse",
                   fallback: str = "float", log=print, winograd: bool = False) -> tuple:
    """A quantized copy of `model` (converted first: its fused forward keeps running) and quantize_'s report.
    winograd: Int8Config(winograd=True), the 3×3 convs in the Winograd domain where that measures faster here."""
    q = copy.deepcopy(model).eval()
    convert_(q)
    lrs, hrs = calibration_pairs(calib_dirs, crops)
    t = time.perf_counter()
    report = quantize_(q, Int8Config(observer=observer, psnr_budget_db=budget, fallback=fallback, winograd=winograd),
                       calibration=lrs, targets=hrs)
    st = report.stats
    log(f"quantize_: {len(report.names('quantized'))} convs int8, {len(st.get('kept', []))} kept "
        f"{fallback} ({', '.join(st.get('kept', [])) or 'none'}); calibration PSNR float {st['psnr_float']:.3f} dB, "
        f"int8 {st.get('psnr_int8', st['psnr_int8_all']):.3f} dB; {time.perf_counter() - t:.0f} s")
    if winograd:
        n = sum(1 for r in report.rows if r.stats.get("winograd"))
        log(f"  {n} convs in the Winograd domain; back to the direct conv under the budget: "
            f"{', '.join(st.get('winograd_direct', [])) or 'none'}")
    return q, report


def eval_pairs(model, names=("china", "flower")) -> dict:
    from ..data.datasets import sr_pair
    from ..metrics.quality import psnr

    out = {}
    with torch.no_grad():
        for n in names:
            lr, hr = sr_pair(n)
            out[n] = round(psnr(model(lr.reshape(1, *lr.shape[-3:])).clamp(0, 1), hr, crop_border=4), 3)
    return out


def write(q, report, out: str, base_name: str, command: str, config: dict, psnr_eval: dict,
          psnr_float: dict) -> Path:
    from ..models.int8 import save_int8

    card = dict(name=Path(out).name, base=base_name, command=command, config=config, psnr_eval=psnr_eval,
                psnr_eval_float=psnr_float, kept_float=report.stats.get("kept", []),
                calibration_psnr=dict(float=report.stats["psnr_float"],
                                      int8=report.stats.get("psnr_int8", report.stats["psnr_int8_all"])))
    return save_int8(q, out, card)
