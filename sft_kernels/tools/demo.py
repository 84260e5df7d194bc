"""`sft-kernels demo`: upscale a real photo ×4 with SFTNet on every backend available here and compare.

The model is converted per backend with `convert_` (same weights), every output is checked against eager
PyTorch, and a table of time per backend vs eager is printed. The Triton backend without a GPU runs
through its interpreter (correctness only, very slow), so it is checked on a small crop. Where the cpu backend
and the shipped `teacher-int8` exist, the int8 model runs too; it agrees when its output is within
INT8_MIN_PSNR dB of eager's (int8 rounds every activation, so it is never bit-close).
"""
from __future__ import annotations

import copy
import os
import re

import torch

from .. import backends
from ..runtime import autotune

from ..transforms import convert_
from .benchmark import format_table, time_interleaved
from ..data import bicubic_downscale, load_image, mod_crop
from ..data.datasets import TRAIN_IMAGES
from ..data.images import imresize
from ..metrics import psnr
from ..models import SFTNet
from ..models import pretrained as shipped_weights


INT8_MIN_PSNR = 35.0


def _save_png(img: torch.Tensor, path: str) -> None:
    from PIL import Image

    arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(path)


def run(image: str = "astronaut", lr_size: int = 128, out_dir: str = "demo_out", repeat: int = 3,
        crop: int = 16, seed: int = 0, progress: bool = True, print_fn=print) -> list:
    hr = mod_crop(load_image(image), 4)
    lr = bicubic_downscale(hr, 4).clamp(0, 1)
    if lr_size:  # centre crop of the LR image (and the matching HR region) to keep the demo quick
        top, left = max(0, (lr.shape[1] - lr_size) // 2), max(0, (lr.shape[2] - lr_size) // 2)
        lr = lr[:, top:top + lr_size, left:left + lr_size]
        hr = hr[:, 4 * top:4 * (top + lr.shape[1]), 4 * left:4 * (left + lr.shape[2])]
    x = lr.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    if "teacher" in shipped_weights.shipped():
        eager, what = shipped_weights.pretrained("teacher"), "shipped trained 'teacher' weights"
    else:
        eager, what = SFTNet("pytorch").reset_parameters_(seed=seed).eval(), "untrained seeded weights"
    print_fn(f"SFTNet ('pytorch' variant, {what}) on '{image}': "
             f"LR {tuple(x.shape[2:])} -> x4, {torch.get_num_threads()} thread(s)")
    os.makedirs(out_dir, exist_ok=True)
    _save_png(hr, os.path.join(out_dir, "hr.png"))
    bicubic = imresize(lr, 4).clamp(0, 1)
    _save_png(bicubic, os.path.join(out_dir, "bicubic.png"))

    names = [b for b in backends.available() if b in ("reference", "cpu", "cuda", "triton")]
    models = {"eager PyTorch": eager}
    for name in names:
        m = copy.deepcopy(eager)
        convert_(m, backend=name)
        models[name] = m
    auto = copy.deepcopy(eager)
    convert_(auto)  # backend=None: per-layer measured choice among the non-interpreted backends
    auto_name = "auto (backend=None)"
    models[auto_name] = auto
    bf16_unit = "AMX" if backends.bf16_unit() == "amx" else "AVX512-BF16"
    bf16_name = f"cpu bf16 ({bf16_unit})"
    if "cpu" in names and backends.bf16_available():  # the same model with its convs computed in bf16
        models[bf16_name] = copy.deepcopy(eager)
        convert_(models[bf16_name], fp32_precision="bf16")
    int8_name = "int8 (teacher-int8, cpu)"
    if "cpu" in names and what.startswith("shipped") and "teacher-int8" in shipped_weights.shipped():
        models[int8_name] = shipped_weights.pretrained("teacher-int8")
    interpreted = "triton" in models and not torch.cuda.is_available()

    rows = []
    with torch.no_grad():
        ref_full = eager(x)
        xs = x[:, :, :crop, :crop]
        ref_crop = eager(xs)
        timed = {k: (lambda m=m: m(x)) for k, m in models.items() if not (interpreted and k == "triton")}
        it = list(timed)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="checking backends", unit="backend")
        for name in it:
            out = models[name](x)
            _save_png(out[0], os.path.join(out_dir, f"sr_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.png"))
            rows.append([name, tuple(x.shape[2:]), (out - ref_full).abs().max().item(), psnr(out, ref_full)])
        # backend=None models settle their measured choices over their first calls (autotune.SecondLook re-times
        # the other candidates alongside the winner): timed before that, they show the re-timing, not the model
        settle = autotune.SecondLook.WARM + 2 * autotune.SecondLook.ROUNDS
        for name in (auto_name, bf16_name):
            if name in models:
                for _ in range(settle):
                    models[name](x)
        times = time_interleaved(timed, repeat=repeat, warmup=1)
        if interpreted:
            out = models["triton"](xs)
            rows.append(["triton", tuple(xs.shape[2:]), (out - ref_crop).abs().max().item(), psnr(out, ref_crop)])
    base = times["eager PyTorch"]
    table = []
    for name, size, diff, p in rows:
        t = times.get(name)
        close = diff <= 1e-3 * max(1.0, ref_full.abs().max().item())
        agree = p >= INT8_MIN_PSNR if name in (int8_name, bf16_name) else close
        table.append([name, f"{size[0]}x{size[1]}", f"{t * 1e3:.1f}" if t else "interpreter",
                      f"{base / t:.2f}x" if t else "-", f"{diff:.2e}", "yes" if agree else "NO"])
    print_fn(format_table(table, ["backend", "LR input", "ms", "vs eager", "max |diff| vs eager", "agrees"]))
    if interpreted:
        print_fn(f"triton: no GPU here, so it ran through the Triton interpreter (correctness only) on a "
                 f"{crop}x{crop} crop; on a GPU it is compiled.")
    if int8_name in models:
        p8 = next(r[3] for r in rows if r[0] == int8_name)
        print_fn(f"int8: the shipped teacher-int8 (every conv int8, `sft-kernels quantize`), {p8:.1f} dB from eager's "
                 f"output (agrees at >= {INT8_MIN_PSNR:.0f} dB)")
    if bf16_name in models:
        pb = next(r[3] for r in rows if r[0] == bf16_name)
        how = "; 3x3 convs in bf16 Winograd" if bf16_unit == "AVX512-BF16" else ""
        print_fn(f"cpu bf16: convert_(model, fp32_precision=\"bf16\"), inputs and weights of the convs rounded to "
                 f"bfloat16 ({bf16_unit}{how}), {pb:.1f} dB from eager's output")
    sr = ref_full[0].clamp(0, 1)
    _save_png(torch.cat([bicubic, sr, hr], dim=2), os.path.join(out_dir, "side_by_side.png"))
    seen = " (this photo is in the training set: see the README for the held-out china/flower numbers)" \
        if image in TRAIN_IMAGES else ""
    print_fn(f"quality vs the original (Y, crop 4): bicubic {psnr(bicubic, hr, crop_border=4):.2f} dB, "
             f"SFTNet {psnr(sr, hr, crop_border=4):.2f} dB{seen}")
    print_fn(f"images saved in {out_dir}/ (side_by_side.png = bicubic | SFTNet | original; hr.png, bicubic.png, "
             "sr_<backend>.png)")
    return table
