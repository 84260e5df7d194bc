"""The `sft-kernels quantize --winograd` model (calibrated on 8 HR crops of 256²; the budget sent the HR branch's
three convs back to the direct conv, the 32 trunk convs stayed Winograd) against the shipped teacher-int8 (direct) and
our fp32 model, NCHW input, interleaved medians in one process. Made with:
    sft-kernels quantize --winograd --threads 2 -o runs/teacher-int8w
Run: python benchmarks/results/2026-12-06s23_zen4-2c/cli_winograd_ab.py runs/teacher-int8w.safetensors"""
import copy
import sys

import torch

import sft_kernels
from sft_kernels.models import pretrained
from sft_kernels.tools.benchmark import time_interleaved

teacher = pretrained.pretrained("teacher").eval()
fp32 = copy.deepcopy(teacher)
sft_kernels.convert_(fp32)
direct = pretrained.resolve_model("teacher-int8")
wino = pretrained.resolve_model(sys.argv[1])
x = torch.rand(1, 3, 128, 128)
for threads in (1, 2):
    torch.set_num_threads(threads)
    with torch.no_grad():
        t = time_interleaved({"fp32": lambda: fp32(x), "int8 direct (teacher-int8)": lambda: direct(x),
                              "int8 --winograd": lambda: wino(x)}, repeat=7)
    ms = {k: v * 1e3 for k, v in t.items()}
    print(f"{threads} threads: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
          + f"; --winograd vs fp32 {ms['fp32'] / ms['int8 --winograd']:.2f}x, vs direct "
          f"{ms['int8 direct (teacher-int8)'] / ms['int8 --winograd']:.2f}x", flush=True)
