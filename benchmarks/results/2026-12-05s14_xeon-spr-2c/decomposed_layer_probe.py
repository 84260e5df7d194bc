"""Trunk conv 64->64 3x3 at 128x128 (channels_last, no_grad): converted dense (auto: Winograd) vs the pairs that halve
its MACs (spatial SVD rank 48, separable multiplier 4), converted; interleaved medians."""
import copy

import torch

import sft_kernels
from torch import nn
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.transforms.factorize import split as svd_split
from sft_kernels.transforms.to_separable import split as sep_split
for threads in (1, 2):
    torch.set_num_threads(threads)
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    mods = {"dense (auto)": nn.Sequential(copy.deepcopy(conv)), "svd rank 48": nn.Sequential(svd_split(conv, 48)),
            "separable m4": nn.Sequential(sep_split(conv, 4)), "separable m2": nn.Sequential(sep_split(conv, 2))}
    for m in mods.values():
        sft_kernels.convert_(m)
    direct = copy.deepcopy(conv)
    sft_kernels.convert_(nn.Sequential(direct))
    with torch.no_grad():
        fns = {k: (lambda m=m: m(x)) for k, m in mods.items()}
        fns["dense direct"] = lambda: sft_kernels.ops.conv2d(x, conv.weight, conv.bias, 1, 1, algorithm="direct")
        t = time_interleaved(fns, repeat=15)
    base = t["dense (auto)"]
    for k, v in t.items():
        print(f"{threads} thread(s) {k:14s} {v*1e3:7.3f} ms  {base / v:5.2f}x dense (auto)")
