"""MobileNetV2 (bench_mobilenetv2.py's model, 1×3×224×224 NCHW) after fuse_for_inference + quantize_, with the
classifier's Linear int8 (QuantLinear, the default) and float (Int8Config(linear=False)), interleaved medians in one
process; SQNR of each against the float model. Run from the repo root:
python benchmarks/results/2026-12-05s22_zen4-2c/linear_head_ab.py [threads ...]"""
import math
import sys

import torch

import sft_kernels
sys.path.insert(0, "benchmarks/models")
from bench_mobilenetv2 import build  # noqa: E402
from sft_kernels.tools.benchmark import time_interleaved  # noqa: E402

base = build()
x = torch.rand(1, 3, 224, 224)
calib = [torch.rand(1, 3, 224, 224) for _ in range(4)]
models = {}
for linear in (True, False):
    m = sft_kernels.fuse_for_inference(base, x, backend="cpu")
    sft_kernels.quantize_(m, sft_kernels.Int8Config(linear=linear), calibration=calib, progress=False)
    models["int8, Linear int8" if linear else "int8, Linear float"] = m
with torch.no_grad():
    ref = base(x)
    for k, m in models.items():
        y = m(x)
        print(f"{k}: SQNR {10 * math.log10(float((ref ** 2).sum()) / float(((y - ref) ** 2).sum())):.1f} dB")
    for threads in [int(t) for t in sys.argv[1:]] or [1, 2]:
        torch.set_num_threads(threads)
        t = time_interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, repeat=31)
        print(f"{threads} thread(s): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in t.items())
              + f"; float head / int8 head {t['int8, Linear float'] / t['int8, Linear int8']:.3f}x")
