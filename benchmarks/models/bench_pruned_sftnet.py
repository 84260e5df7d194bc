"""Compressed SFTNet end to end (1×3×lr×lr LR -> ×4), as users call it: an ordinary NCHW tensor (and channels_last)
under torch.no_grad(), in this fresh process. Candidates, interleaved: our dense converted teacher and each
compressed model given, converted (checkpoints from `sft-kernels train --prune ...` / `--prune-channels ...` /
`--factorize ...` / `--separable ...`, exported or a run's last.pt; they load as SparseConv2d, smaller convs,
SpatialSVDConv2d or SeparableConv2d pairs), with each model's PSNR on china and flower (never trained on) against
the teacher's, and its parameters and conv MACs.

Run: python benchmarks/models/bench_pruned_sftnet.py MODEL [MODEL ...] [--threads 1 2] [--lr 128] [-o out.json]
"""
import argparse
import copy
import json
import sys

import torch

import sft_kernels
from sft_kernels.metrics import conv_macs
from sft_kernels.models import pretrained
from sft_kernels.nn import SparseConv2d
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.quantize import eval_pairs


def describe(model, lr: int) -> dict:
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    nnz = sum(int(m.mask.sum()) if isinstance(m, SparseConv2d) else m.weight.numel() for m in convs)
    with torch.no_grad():
        macs = conv_macs(model, torch.rand(1, 3, lr, lr))
    return dict(params=sum(p.numel() for p in model.parameters()), conv_weights_kept=nnz, conv_gmacs=macs / 1e9,
                sparse_convs=sum(isinstance(m, SparseConv2d) and m._sparse() for m in convs))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="pruned checkpoints (.safetensors / .pt) or shipped names")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)

    teacher = pretrained.pretrained("teacher").eval()
    dense = copy.deepcopy(teacher)
    sft_kernels.convert_(dense)
    models = {"dense converted": dense}
    for path in args.models:
        m = pretrained.resolve_model(path).eval()
        sft_kernels.convert_(m)  # as a user would: the dense convs left (all of a channel-pruned model's) run ours
        models[path] = m
    quality = {name: eval_pairs(m) for name, m in models.items()}
    info = {name: describe(m, args.lr) for name, m in models.items()}
    for name in models:
        d = {k: f"{v:.3f} ({v - quality['dense converted'][k]:+.3f})" for k, v in quality[name].items()}
        print(f"{name}: PSNR {d}; {info[name]}")
    x = torch.rand(1, 3, args.lr, args.lr)
    xcl = x.contiguous(memory_format=torch.channels_last)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        fns = {}
        for name, m in models.items():
            fns[f"{name} | nchw"] = lambda m=m: m(x)
            fns[f"{name} | channels_last"] = lambda m=m: m(xcl)
        with torch.no_grad():
            t = time_interleaved(fns, repeat=args.repeat)
        base = t["dense converted | nchw"]
        for name, v in t.items():
            row = dict(threads=threads, model=name, ms=v * 1e3, vs_dense_nchw=base / v)
            rows.append(row)
            print(f"{threads} thread(s) {name:60s} {v * 1e3:8.1f} ms  {base / v:5.2f}x dense converted (NCHW)",
                  flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(rows=rows, psnr=quality, models=info, lr=args.lr), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
