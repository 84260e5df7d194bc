"""Timing only: the shipped teacher pruned by magnitude (no fine-tuning: its PSNR is not the point) until every
conv runs on the sparse kernel, against the dense teacher, both converted; 1×3×lr×lr NCHW input under
torch.no_grad(), interleaved medians, in this fresh process. Shows what the sparse kernels give a whole model at a
sparsity where `SparseConv2d` runs them (at 70 % it keeps the 3×3 convs dense: Winograd is faster there).

Run: python benchmarks/models/bench_sparse_sftnet_timing.py [--sparsity 0.9] [--threads 1 2] [--lr 128]
"""
import argparse
import copy

import torch

import sft_kernels
from sft_kernels.models import pretrained
from sft_kernels.nn import SparseConv2d
from sft_kernels.tools.benchmark import time_interleaved


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    teacher = pretrained.pretrained("teacher").eval()
    models = {"dense": copy.deepcopy(teacher)}
    for pattern in ("unstructured", "block"):
        m = copy.deepcopy(teacher)
        sft_kernels.prune_(m, sft_kernels.PruneConfig(sparsity=args.sparsity, pattern=pattern))
        models[pattern] = m
    for m in models.values():
        sft_kernels.convert_(m)
    for name, m in models.items():
        convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
        n = sum(isinstance(c, SparseConv2d) and c._sparse() for c in convs)
        print(f"{name}: {n} of {len(convs)} convs on the sparse kernel")
    x = torch.rand(1, 3, args.lr, args.lr)
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.no_grad():
            for m in models.values():  # past the autotuner's first measurements (default backend, as users run)
                for _ in range(10):
                    m(x)
            t = time_interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, repeat=args.repeat, min_time=0.5)
        for k, v in t.items():
            print(f"{threads} thread(s)  {k:14s} {v * 1e3:7.1f} ms  {t['dense'] / v:.2f}x the dense model")


if __name__ == "__main__":
    main()
