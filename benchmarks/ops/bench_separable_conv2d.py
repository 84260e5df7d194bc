"""sft.separable_conv2d (the fused cpu kernel) against PyTorch's two convs (eager, the faster of NCHW and
channels_last) and against our own two unfused calls (sft.conv2d depthwise, then sft.conv2d 1×1), on SFTNet-like
widths and MobileNetV2's depthwise + projection pairs. Interleaved medians, GFLOP/s, ratios side by side. The op is
called with plain weight tensors, which the weight cache checks value by value on every call; "module" is the same
pair as users run it, an nn.Sequential(depthwise, ReLU, 1×1) after `sft_kernels.convert_` (weights checked by
version), against eager PyTorch's best, fed the channels_last input and an ordinary NCHW one.
Usage: python benchmarks/ops/bench_separable_conv2d.py [--threads 1 2] [--catalog sftnet mobilenetv2] [-o out.json]
"""
import argparse
import copy
import json
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
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

    seq = nn.Sequential(nn.Conv2d(s.c, s.c, s.r, st, pad, groups=s.c), nn.ReLU(), nn.Conv2d(s.c, s.k, 1))
    with torch.no_grad():
        for conv, w, b in ((seq[0], dw, dwb), (seq[2], pw, pwb)):
            conv.weight.copy_(w)
            conv.bias.copy_(b)
    converted = copy.deepcopy(seq).eval()
    report = sft_kernels.convert_(converted, backend="cpu")
    assert report.fused, "convert_ did not fuse the depthwise + 1x1 pair"
    return {
        "torch nchw": lambda: torch_two(x),
        "torch cl": lambda: torch_two(xcl),
        "sft two calls": lambda: ops.conv2d(ops.conv2d(xcl, dw, dwb, st, pad, 1, s.c, activation=mid, backend="cpu"),
                                            pw, pwb, backend="cpu"),
        "sft fused": lambda: ops.separable_conv2d(xcl, dw, pw, dwb, pwb, st, pad, mid_activation=mid, backend="cpu"),
        "sft module": lambda: converted(xcl),
        "sft module nchw": lambda: converted(x),
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
          f"{'vs torch':>8s} {'vs two calls':>12s} {'module ms':>9s} {'module vs torch':>15s} {'nchw in':>8s}")
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
                           vs_two_calls=t["sft two calls"] / t["sft fused"], gflops=s.flops / t["sft fused"] / 1e9,
                           module_vs_torch=best / t["sft module"], module_nchw_vs_torch=best / t["sft module nchw"])
                rows.append(row)
                print(f"{threads:3d} {cat[:6] + ' ' + s.name:22s} {best * 1e3:13.3f} {t['sft two calls'] * 1e3:12.3f} "
                      f"{t['sft fused'] * 1e3:9.3f} {row['gflops']:8.1f} {row['vs_torch']:7.2f}x "
                      f"{row['vs_two_calls']:11.2f}x {t['sft module'] * 1e3:9.3f} {row['module_vs_torch']:14.2f}x "
                      f"{row['module_nchw_vs_torch']:7.2f}x",
                      flush=True)
    print(summary(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def summary(rows) -> str:
    """Geomean (min-max) of each ratio per thread count and catalog: the README table's rows."""
    heads = ("vs torch", "vs two calls", "module vs torch", "module, NCHW in")
    lines = [f"{'thr':>3s} {'catalog':12s} " + " ".join(f"{h:>18s}" for h in heads) + " GFLOP/s"]
    for threads in sorted({r["threads"] for r in rows}):
        for cat in dict.fromkeys(r["catalog"] for r in rows):
            sel = [r for r in rows if r["threads"] == threads and r["catalog"] == cat]
            if not sel:
                continue
            cells = []
            for key in ("vs_torch", "vs_two_calls", "module_vs_torch", "module_nchw_vs_torch"):
                v = [r[key] for r in sel]
                geo = math.exp(sum(math.log(x) for x in v) / len(v))
                cells.append(f"{geo:.2f}x ({min(v):.2f}-{max(v):.2f}x)")
            g = [r["gflops"] for r in sel]
            cells = " ".join(f"{c:>18s}" for c in cells)
            lines.append(f"{threads:3d} {cat:12s} {cells} {min(g):.0f}-{max(g):.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
