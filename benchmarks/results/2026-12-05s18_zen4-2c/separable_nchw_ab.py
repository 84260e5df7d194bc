"""The NCHW-fed converted separable module against eager PyTorch on the same NCHW tensor: fed NCHW (the
layout policy's blocked transpose) and after ATen's copy to channels_last (the earlier path), interleaved.
Run from the repository root: python benchmarks/results/2026-12-05s18_zen4-2c/separable_nchw_ab.py THREADS"""
import sys, torch
sys.path.insert(0, "benchmarks/ops")
import bench_separable_conv2d as B
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import separable_shapes
torch.set_num_threads(int(sys.argv[1]))
for cat in ("sftnet", "mobilenetv2"):
    for s in separable_shapes(cat):
        c = B.candidates(s)
        x = torch.randn(s.n, s.c, s.h, s.w)
        fns = {"torch nchw": c["torch nchw"], "module nchw (new)": c["sft module nchw"]}
        # the old path: ATen's copy to channels_last, then the module
        conv_mod = None
        for cell in c["sft module"].__closure__ or []:
            if isinstance(cell.cell_contents, torch.nn.Module):
                conv_mod = cell.cell_contents
        xin = None
        for cell in c["torch nchw"].__closure__ or []:
            v = cell.cell_contents
            cl = isinstance(v, torch.Tensor) and v.is_contiguous(memory_format=torch.channels_last)
            if isinstance(v, torch.Tensor) and v.dim() == 4 and v.shape[1] == s.c and not cl:
                xin = v
        fns["module nchw (ATen copy)"] = lambda m=conv_mod, xx=xin: m(xx.contiguous(memory_format=torch.channels_last))
        with torch.no_grad():
            t = time_interleaved(fns, repeat=11)
        ref, old, new = t["torch nchw"], t["module nchw (ATen copy)"], t["module nchw (new)"]
        print(f"{s.name:24s} torch nchw {ref * 1e3:7.3f}  old {old * 1e3:7.3f} ({ref / old:.2f}x)  "
              f"new {new * 1e3:7.3f} ({ref / new:.2f}x)", flush=True)
