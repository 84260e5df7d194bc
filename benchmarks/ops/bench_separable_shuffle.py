"""sft.separable_conv2d with pixel_shuffle=r (an SR upsampling layer made separable: depthwise 3×3, ReLU, 1×1 to
C·r² channels, PixelShuffle(r), + residual) as one call whose store writes the shuffled output, against the same
result as steps (the fused conv, then F.pixel_shuffle, then the add) and against eager
PyTorch (two convs, pixel_shuffle, add; channels_last). Interleaved medians in this process, GFLOP/s of the convs.

Usage: python benchmarks/ops/bench_separable_shuffle.py [--threads 1 2] [--repeat 11] [-o out.json]
"""
import argparse
import json

import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.tools.benchmark import time_interleaved

SHAPES = [(64, 2, 64), (64, 2, 128), (32, 2, 128), (64, 3, 64)]  # (channels in and out, r, LR size)


def candidates(c, r, hw, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, hw, hw, generator=g).contiguous(memory_format=torch.channels_last)
    dw, dwb = torch.randn(c, 1, 3, 3, generator=g), torch.randn(c, generator=g)
    pw, pwb = torch.randn(c * r * r, c, 1, 1, generator=g) / c ** 0.5, torch.randn(c * r * r, generator=g)
    res = torch.randn(1, c, hw * r, hw * r, generator=g).contiguous(memory_format=torch.channels_last)
    kw = dict(mid_activation="relu", backend="cpu")

    def steps():
        y = ops.separable_conv2d(x, dw, pw, dwb, pwb, 1, 1, **kw)
        return F.pixel_shuffle(y, r) + res

    def eager():
        return F.pixel_shuffle(F.conv2d(F.relu(F.conv2d(x, dw, dwb, 1, 1, 1, c)), pw, pwb), r) + res

    fns = {"store": lambda: ops.separable_conv2d(x, dw, pw, dwb, pwb, 1, 1, residual=res, pixel_shuffle=r, **kw),
           "steps": steps, "eager PyTorch": eager}
    want = eager()
    for name, fn in fns.items():
        torch.testing.assert_close(fn(), want, atol=1e-3, rtol=1e-4, msg=name)
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("-o", "--output", help="JSON file for the rows")
    args = p.parse_args(argv)
    print(f"{'thr':>3s} {'shape':22s} {'store ms':>9s} {'steps ms':>9s} {'eager ms':>9s} {'GFLOP/s':>8s} "
          f"{'vs steps':>8s} {'vs eager':>8s}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for c, r, hw in SHAPES:
            with torch.no_grad():
                t = time_interleaved(candidates(c, r, hw), repeat=args.repeat)
            flops = 2 * hw * hw * (9 * c + c * c * r * r)
            name = f"{c}→{c * r * r} r={r} @{hw}"
            row = dict(threads=threads, shape=name, ms={k: v * 1e3 for k, v in t.items()},
                       gflops=flops / t["store"] / 1e9, vs_steps=t["steps"] / t["store"],
                       vs_eager=t["eager PyTorch"] / t["store"])
            rows.append(row)
            print(f"{threads:3d} {name:22s} {t['store'] * 1e3:9.3f} {t['steps'] * 1e3:9.3f} "
                  f"{t['eager PyTorch'] * 1e3:9.3f} {row['gflops']:8.1f} {row['vs_steps']:7.2f}x "
                  f"{row['vs_eager']:7.2f}x", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
