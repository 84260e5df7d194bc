"""sft.conv2d against F.conv2d, both on NCHW tensors (one process, interleaved; prints JSON). Run once per
build, alternating the builds, from the repository root (docs/PERF_NOTES.md, NCHW -> channels_last)."""
import json

import torch
from sft_kernels import ops
from sft_kernels.tools.benchmark import time_interleaved
import torch.nn.functional as F
torch.set_num_threads(1)
out = {}
for c, k, h in ((64, 64, 128), (64, 64, 256), (3, 64, 128), (64, 3, 512)):
    x = torch.randn(1, c, h, h); w = torch.randn(k, c, 3, 3) * 0.05; b = torch.randn(k)
    t = time_interleaved({"torch": lambda: F.conv2d(x, w, b, 1, 1),
                          "sft": lambda: ops.conv2d(x, w, b, 1, 1, backend="cpu")}, repeat=9)
    out[f"{c}->{k} @{h}"] = t
print(json.dumps(out))
