"""ResNet-50 (benchmarks/models/bench_resnet50.py's, seeded random weights, eval) converted in float32 and with fp32_precision="bf16", beside
eager: interleaved medians on an ordinary NCHW 1×3×224×224 input under no_grad, 1 and 2 threads, and the bf16
model's output error against eager, and what each measured 3×3 conv chose (float32, bf16 or bf16 Winograd; the script
behind e2e_resnet50_bf16.txt)."""
import copy

import os
import sys

import torch

import sft_kernels
from sft_kernels.tools.benchmark import time_interleaved

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "models"))
from bench_resnet50 import resnet50  # noqa: E402

torch.manual_seed(0)
eager = resnet50().eval()
fp32 = copy.deepcopy(eager)
sft_kernels.convert_(fp32)
bf16 = copy.deepcopy(eager)
rep = sft_kernels.convert_(bf16, fp32_precision="bf16")
print(str(rep).splitlines()[0], "| unit:", sft_kernels.backends.bf16_unit())
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    ref, y32, y16 = eager(x), fp32(x), bf16(x)
rel = lambda y: ((y - ref).norm() / ref.norm()).item()
print(f"relative error vs eager: fp32 {rel(y32):.1e}, bf16 {rel(y16):.1e}; top-5 agree "
      f"{len(set(ref.topk(5).indices[0].tolist()) & set(y16.topk(5).indices[0].tolist()))}/5")
for th in (1, 2):
    torch.set_num_threads(th)
    with torch.no_grad():
        t = time_interleaved({"eager": lambda: eager(x), "sft fp32": lambda: fp32(x), "sft bf16": lambda: bf16(x)},
                             repeat=15)
    print(f"{th} thread(s): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
          + f"; bf16 {t['sft fp32'] / t['sft bf16']:.2f}x our fp32, {t['eager'] / t['sft bf16']:.2f}x eager",
          flush=True)
from sft_kernels.runtime import autotune  # noqa: E402

for k, v in autotune.choices().items():  # what the measured 3×3 convs chose, per input shape and thread count
    if k[0] == "bf16_or_fp32":
        print(f"{k[-1]} thread(s) {tuple(k[1])} {tuple(k[4])} {v}")
