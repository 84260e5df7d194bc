"""The probe behind int8_baseline_probe.txt: PyTorch's quantized x86 engine, fp32 oneDNN and our fp32 cpu conv on
one 64->64 3x3 conv at 128x128, channels_last, interleaved medians. Usage: python int8_baseline_probe.py [threads]"""
import statistics
import sys
import time

import torch
from torch.ao.nn.quantized import Conv2d as QConv2d

import sft_kernels as sk

torch.backends.quantized.engine = "x86"
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
c = QConv2d(64, 64, 3, padding=1)
w = torch.randn(64, 64, 3, 3) * 0.05
scales = (w.abs().amax((1, 2, 3)) / 127).double()
c.set_weight_bias(torch.quantize_per_channel(w, scales, torch.zeros(64, dtype=torch.long), 0, torch.qint8),
                  torch.randn(64))
c.scale, c.zero_point = 0.05, 128
x = torch.rand(1, 64, 128, 128)
qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8).contiguous(memory_format=torch.channels_last)
f32 = torch.nn.Conv2d(64, 64, 3, padding=1)
xcl = x.contiguous(memory_format=torch.channels_last)
fns = {"q": lambda: c(qx), "fp32 onednn": lambda: f32(xcl),
       "sft fp32": lambda: sk.ops.conv2d(xcl, f32.weight, f32.bias, padding=1, backend="cpu")}
with torch.no_grad():
    for f in fns.values():
        f()
        f()
    t = {k: [] for k in fns}
    for _ in range(15):
        for k, f in fns.items():
            s = time.perf_counter()
            f()
            t[k].append(time.perf_counter() - s)
flops = 2 * 64 * 64 * 9 * 128 * 128
for k, v in t.items():
    m = statistics.median(v)
    print(k, round(m * 1e3, 2), "ms", round(flops / m / 1e9, 1), "GOP/s")
