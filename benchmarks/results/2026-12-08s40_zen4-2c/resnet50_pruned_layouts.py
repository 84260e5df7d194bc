import sys, torch
sys.path.insert(0, "benchmarks/models")  # run from the repository root: python benchmarks/results/2026-12-08s40_zen4-2c/resnet50_pruned_layouts.py THREADS SPARSITY PATTERN
from bench_resnet50 import build
import sft_kernels
from sft_kernels.tools.benchmark import time_interleaved
torch.set_num_threads(int(sys.argv[1]))
_, xcl = build(1)
xn = xcl.contiguous()
dense = sft_kernels.fuse_for_inference(build(1, fold=False)[0], xcl, backend="cpu")
m = build(1, fold=False)[0]
sft_kernels.prune_(m, sft_kernels.PruneConfig(sparsity=float(sys.argv[2]), pattern=sys.argv[3]))
pruned = sft_kernels.fuse_for_inference(m, xcl, backend="cpu")
fns = {"dense NCHW": lambda: dense(xn), "pruned NCHW": lambda: pruned(xn),
       "dense cl": lambda: dense(xcl), "pruned cl": lambda: pruned(xcl)}
with torch.no_grad():
    for f in fns.values():
        for _ in range(5): f()
    t = time_interleaved(fns, repeat=9, min_time=0.5)
print(sys.argv[1], "threads,", sys.argv[2], sys.argv[3] + ":", " ".join(f"{k} {v*1e3:.1f} ms" for k, v in t.items()),
      f"| pruned/dense NCHW {t['dense NCHW']/t['pruned NCHW']:.2f}x, cl {t['dense cl']/t['pruned cl']:.2f}x")
