"""sft.separable_conv2d (the fused cpu kernel) against PyTorch's two convs (eager, the faster of NCHW and
channels_last) and against our own two unfused calls (sft.conv2d depthwise, then sft.conv2d 1×1), on SFTNet-like
widths and MobileNetV2's depthwise + projection pairs. Interleaved medians, GFLOP/s, ratios side by side.
Usage: python benchmarks/ops/bench_separable_conv2d.py [--threads 1 2] [--catalog sftnet mobilenetv2] [-o out.json]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import separable_shapes


def candidates(s, mid="relu"):
    x = torch.randn(s.n, s.c, s.h, s.w)
    xcl = x.contiguous(memory_format=torch.channels_last)
    dw, dwb = torch.randn(s.c, 1, s.r, s.r), torch.randn(s.c)
    pw, pwb = torch.randn(s.k, s.c, 1, 1), torch.randn(s.k)
    pad, st = s.r // 2, s.stride

    def torch_two(inp):
        return F.conv2d(F.relu(F.conv2d(inp, dw, dwb, st, pad, 1, s.c)), pw, pwb)

    return {
        "torch nchw": lambda: torch_two(x),
        "torch cl": lambda: torch_two(xcl),
        "sft two calls": lambda: ops.conv2d(ops.conv2d(xcl, dw, dwb, st, pad, 1, s.c, activation=mid, backend="cpu"),
                                            pw, pwb, backend="cpu"),
        "sft fused": lambda: ops.separable_conv2d(xcl, dw, pw, dwb, pwb, st, pad, mid_activation=mid, backend="cpu"),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--catalog", nargs="+", default=["sftnet", "mobilenetv2"], choices=["sftnet", "mobilenetv2"])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows = []
    print(f"{'thr':>3s} {'shape':22s} {'torch best ms':>13s} {'two calls ms':>12s} {'fused ms':>9s} {'GFLOP/s':>8s} "
          f"{'vs torch':>8s} {'vs two calls':>12s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for cat in args.catalog:
            for s in separable_shapes(cat):
                fns = candidates(s)
                with torch.no_grad():
                    t = time_interleaved(fns, repeat=args.repeat)
                best = min(t["torch nchw"], t["torch cl"])
                row = dict(threads=threads, catalog=cat, shape=s.name, flops=s.flops,
                           ms={k: v * 1e3 for k, v in t.items()}, vs_torch=best / t["sft fused"],
                           vs_two_calls=t["sft two calls"] / t["sft fused"], gflops=s.flops / t["sft fused"] / 1e9)
                rows.append(row)
                print(f"{threads:3d} {cat[:6] + ' ' + s.name:22s} {best * 1e3:13.3f} {t['sft two calls'] * 1e3:12.3f} "
                      f"{t['sft fused'] * 1e3:9.3f} {row['gflops']:8.1f} {row['vs_torch']:7.2f}x "
                      f"{row['vs_two_calls']:11.2f}x", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
