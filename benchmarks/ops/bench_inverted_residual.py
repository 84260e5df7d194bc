"""sft.inverted_residual (the fused cpu kernel: expand 1×1, depthwise 3×3, projection 1×1 in one pass) on
MobileNetV2's blocks at 224², against PyTorch's three convs (eager, the faster of NCHW and channels_last), against
our own unfused calls (sft.conv2d expand, then the fused sft.separable_conv2d: what fuse_for_inference ran before),
and against onnxruntime running the same block (its CPU provider, if installed). ReLU6 after the expand and
depthwise convs, the block's residual where MobileNetV2 has one. Interleaved medians, GFLOP/s, ratios side by side;
"summed" weighs each shape by its count in one MobileNetV2 forward. The ops are called with plain weight tensors,
which the weight cache checks value by value on every call (a converted model's modules check version counters).
Usage: python benchmarks/ops/bench_inverted_residual.py [--threads 1 2] [--repeat 15] [--min-time 1.5] [-o out.json]
"""
import argparse
import io
import json
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from sft_kernels import ops
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import inverted_residual_shapes


class _Block(nn.Module):  # the block as PyTorch runs it (batch norms folded: biases)
    def __init__(self, ex, dw, pw, exb, dwb, pwb, stride, residual):
        super().__init__()
        self.ex, self.dw, self.pw = (nn.Conv2d(ex.shape[1], ex.shape[0], 1), nn.Conv2d(dw.shape[0], dw.shape[0], 3,
                                     stride, 1, groups=dw.shape[0]), nn.Conv2d(pw.shape[1], pw.shape[0], 1))
        with torch.no_grad():
            for conv, w, b in ((self.ex, ex, exb), (self.dw, dw, dwb), (self.pw, pw, pwb)):
                conv.weight.copy_(w)
                conv.bias.copy_(b)
        self.residual = residual

    def forward(self, x):
        y = self.pw(F.relu6(self.dw(F.relu6(self.ex(x)))))
        return x + y if self.residual else y


def _onnxruntime(block, x, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(block, (x,), buf, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    name, xn = sess.get_inputs()[0].name, x.numpy()
    return lambda: sess.run(None, {name: xn})


def candidates(s, threads):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.n, s.c, s.h, s.w, generator=g)
    xcl = x.contiguous(memory_format=torch.channels_last)
    ex, exb = torch.randn(s.e, s.c, 1, 1, generator=g) / s.c ** 0.5, torch.randn(s.e, generator=g)
    dw, dwb = torch.randn(s.e, 1, 3, 3, generator=g) / 3, torch.randn(s.e, generator=g)
    pw, pwb = torch.randn(s.k, s.e, 1, 1, generator=g) / s.e ** 0.5, torch.randn(s.k, generator=g)
    block = _Block(ex, dw, pw, exb, dwb, pwb, s.stride, s.residual).eval()
    res = xcl if s.residual else None
    fns = {
        "torch nchw": lambda: block(x),
        "torch cl": lambda: block(xcl),
        "sft unfused": lambda: ops.separable_conv2d(
            ops.conv2d(xcl, ex, exb, activation="relu6", backend="cpu"), dw, pw, dwb, pwb, s.stride, 1,
            mid_activation="relu6", residual=res, backend="cpu"),
        "sft fused": lambda: ops.inverted_residual(xcl, ex, dw, pw, exb, dwb, pwb, s.stride, 1, ex_activation="relu6",
                                                   mid_activation="relu6", residual=res, backend="cpu"),
    }
    ort_fn = _onnxruntime(block, x, threads)
    if ort_fn is not None:
        fns["onnxruntime"] = ort_fn
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--min-time", type=float, default=1.5, help="seconds of interleaved rounds per shape at least")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows = []
    print(f"{'thr':>3s} {'shape':22s} {'n':>2s} {'torch best':>10s} {'unfused':>8s} {'fused':>8s} {'ort':>8s} "
          f"{'GFLOP/s':>8s} {'vs torch':>8s} {'vs unfused':>10s} {'vs ort':>7s}   (ms)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        sums = {}
        for s in inverted_residual_shapes():
            fns = candidates(s, threads)
            with torch.no_grad():
                t = time_interleaved(fns, repeat=args.repeat, warmup=5, min_time=args.min_time)
            best = min(t["torch nchw"], t["torch cl"])
            ort_t = t.get("onnxruntime")
            row = dict(threads=threads, shape=s.name, count=s.count, flops=s.flops,
                       ms={k: v * 1e3 for k, v in t.items()}, gflops=s.flops / t["sft fused"] / 1e9, vs_torch=best / t["sft fused"],
                       vs_unfused=t["sft unfused"] / t["sft fused"],
                       vs_onnxruntime=ort_t / t["sft fused"] if ort_t else None)
            rows.append(row)
            for k, v in (("torch best", best), ("unfused", t["sft unfused"]), ("fused", t["sft fused"]),
                         ("ort", ort_t or 0.0)):
                sums[k] = sums.get(k, 0.0) + s.count * v
            ort_s = f"{ort_t * 1e3:8.3f}" if ort_t else f"{'-':>8s}"
            vs_ort = f"{row['vs_onnxruntime']:6.2f}x" if ort_t else f"{'-':>7s}"
            print(f"{threads:3d} {s.name:22s} {s.count:2d} {best * 1e3:10.3f} {t['sft unfused'] * 1e3:8.3f} "
                  f"{t['sft fused'] * 1e3:8.3f} {ort_s} {row['gflops']:8.1f} {row['vs_torch']:7.2f}x "
                  f"{row['vs_unfused']:9.2f}x {vs_ort}")
        vs_ort = f"{sums['ort'] / sums['fused']:6.2f}x" if sums["ort"] else f"{'-':>7s}"
        print(f"{threads:3d} {'summed (x count)':22s} {'':2s} {sums['torch best'] * 1e3:10.3f} "
              f"{sums['unfused'] * 1e3:8.3f} {sums['fused'] * 1e3:8.3f} {sums['ort'] * 1e3:8.3f} {'':8s} "
              f"{sums['torch best'] / sums['fused']:7.2f}x {sums['unfused'] / sums['fused']:9.2f}x {vs_ort}")
        rows.append(dict(threads=threads, shape="summed", ms={k: v * 1e3 for k, v in sums.items()}))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(argv=sys.argv, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
