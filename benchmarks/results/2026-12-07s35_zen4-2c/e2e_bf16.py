"""SFTNet (shipped teacher) converted in float32 and with fp32_precision="bf16" (on AVX512-BF16 vectors its 3×3 convs
run bf16 Winograd): PSNR on china / flower and interleaved medians on an ordinary NCHW 1×3×128×128 input under
no_grad, 1 and 2 threads (the script behind e2e_bf16.txt)."""
import copy

import torch

import sft_kernels
from sft_kernels.models import pretrained
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.quantize import eval_pairs

teacher = pretrained.pretrained("teacher").eval()
fp32 = copy.deepcopy(teacher)
sft_kernels.convert_(fp32)
bf16 = copy.deepcopy(teacher)
rep = sft_kernels.convert_(bf16, fp32_precision="bf16")
print(str(rep).splitlines()[0])
for k, m in (("eager", teacher), ("sft fp32", fp32), ("sft bf16", bf16)):
    print(f"PSNR {k:9s} china / flower: {eval_pairs(m)}", flush=True)
x = torch.rand(1, 3, 128, 128)
for th in (1, 2):
    torch.set_num_threads(th)
    with torch.no_grad():
        t = time_interleaved({"sft fp32": lambda: fp32(x), "sft bf16": lambda: bf16(x)}, repeat=9)
    print(f"{th} thread(s): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
          + f"; bf16 {t['sft fp32'] / t['sft bf16']:.2f}x fp32", flush=True)
