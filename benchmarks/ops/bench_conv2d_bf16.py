"""sft.conv2d(algorithm="bf16") against what PyTorch users get for the same request: oneDNN's conv with
`torch.backends.mkldnn.conv.fp32_precision = "bf16"` (float32 tensors, bf16 multiplies), beside both float32 convs
(ours, with Winograd where it pays, and oneDNN's), and for 3×3 stride-1 convs our bf16 Winograd
(algorithm="bf16_winograd"; GFLOP/s counted as the direct conv's operations). Every ungrouped conv of the SFTNet and
ResNet-50 catalogs (sft_kernels/tools/shapes.py), float32 NCHW input converted by each conv and channels_last; bias
and ReLU in each (fused in ours, F.relu after oneDNN's). Interleaved medians in one process; GFLOP/s and the
fraction of this machine's bf16 peak (back-to-back tdpbf16ps on AMX, vdpbf16ps on AVX512-BF16 vectors:
`torch.ops.sft_cpu.conv2d_bf16_peak_gflops`; `sft_kernels.backends.bf16_unit()` says which runs).

Run: python benchmarks/ops/bench_conv2d_bf16.py [--threads 1 2] [--catalog sftnet resnet50] [--repeat 7] [-o out.json]
On a CPU with neither (sft_kernels.backends.bf16_available() False) our bf16 rows are left out and the ratio is
oneDNN's bf16 against our fp32: what a request for bf16 would give there, where convert_ keeps float32.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.backends import bf16_available, bf16_unit
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import resnet50_conv_shapes, sftnet_conv_shapes

CATALOGS = {"sftnet": sftnet_conv_shapes, "resnet50": resnet50_conv_shapes}


def candidates(s, have_bf16: bool) -> dict:
    x = torch.randn(s.n, s.c, s.h, s.w)
    xcl = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(s.k, s.c, s.r, s.s) * 0.1, torch.randn(s.k)
    args = (s.stride, s.padding, s.dilation)

    def onednn(inp, precision):
        def run():
            torch.backends.mkldnn.conv.fp32_precision = precision
            try:
                return F.relu(F.conv2d(inp, w, b, *args))
            finally:
                torch.backends.mkldnn.conv.fp32_precision = "none"
        return run

    ours = {
        "sft bf16 cl": lambda: ops.conv2d(xcl, w, b, *args, activation="relu", backend="cpu", algorithm="bf16"),
        "sft bf16 nchw": lambda: ops.conv2d(x, w, b, *args, activation="relu", backend="cpu", algorithm="bf16"),
    } if have_bf16 else {}
    if have_bf16 and (s.r, s.s, s.stride, s.dilation) == (3, 3, 1, 1):
        ours["sft bf16 winograd cl"] = lambda: ops.conv2d(xcl, w, b, *args, activation="relu", backend="cpu",
                                                          algorithm="bf16_winograd")
    return {
        **ours,
        "oneDNN bf16 cl": onednn(xcl, "bf16"),
        "sft fp32 cl": lambda: ops.conv2d(xcl, w, b, *args, activation="relu", backend="cpu"),
        "oneDNN fp32 cl": onednn(xcl, "none"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--catalog", nargs="+", default=["sftnet", "resnet50"], choices=sorted(CATALOGS))
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("-o", "--output", help="write the rows as JSON")
    args = p.parse_args(argv)
    have_bf16 = bf16_available()  # AMX tiles or AVX512-BF16 vectors
    if not have_bf16:
        print("no bf16 kernel here (sft_kernels.backends.bf16_available() is False): oneDNN's bf16 against our fp32")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = torch.ops.sft_cpu.conv2d_bf16_peak_gflops() if have_bf16 else float("nan")
        head = f"bf16 peak ({bf16_unit()}) {peak:.0f} GFLOP/s. ms (GFLOP/s, % of peak)" if have_bf16 else "ms (GFLOP/s)"
        print(f"\n{threads} thread(s); {head}; ratios: "
              + ("ours bf16 (channels_last) against oneDNN bf16 and against our fp32" if have_bf16
                 else "oneDNN bf16 against our fp32 (channels_last)"))
        for cat in args.catalog:
            for s in CATALOGS[cat]():
                if s.groups != 1:
                    continue
                with torch.no_grad():
                    t = time_interleaved(candidates(s, have_bf16), repeat=args.repeat, min_time=0.05)
                pct = (lambda g: f", {100 * g / peak:.0f}%") if have_bf16 else (lambda g: "")
                cells = "  ".join(f"{k} {v * 1e3:.3f} ({s.flops / v / 1e9:.0f}{pct(s.flops / v / 1e9)})"
                                  for k, v in t.items())
                if have_bf16:
                    ours = t["sft bf16 cl"]
                    ratios = f"{t['oneDNN bf16 cl'] / ours:.2f}x oneDNN bf16, {t['sft fp32 cl'] / ours:.2f}x our fp32"
                    if "sft bf16 winograd cl" in t:
                        wino = t["sft bf16 winograd cl"]
                        ratios += (f"; bf16 winograd {t['oneDNN bf16 cl'] / wino:.2f}x oneDNN bf16, "
                                   f"{t['sft fp32 cl'] / wino:.2f}x our fp32")
                else:
                    ratios = f"oneDNN bf16 {t['sft fp32 cl'] / t['oneDNN bf16 cl']:.2f}x our fp32"
                print(f"  {cat:8s} {s.name:28s} {cells}  | {ratios}", flush=True)
                rows.append(dict(threads=threads, catalog=cat, shape=s.name, flops=s.flops, peak_gflops=peak,
                                 ms={k: v * 1e3 for k, v in t.items()}))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
