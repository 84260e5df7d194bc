"""sft.qconv2d's int8 and bfloat16 outputs and its uint8 residual, written by the kernel's store, against the same
results made as steps around the conv (what a caller without the fused types would run): int8 = the uint8 output
with the zero point moved by 128, then the sign bit flipped; bfloat16 = the float32 output cast; a uint8 residual =
dequantized to float32 first, then added as a float residual. Each pair is checked equal before timing. The default
uint8 / float32 calls are timed beside them as the floor. Interleaved medians in this process, GOP/s of the conv.

Shapes: SFTNet's trunk conv (64→64 3×3) at 128² and its HR conv at 256², a ResNet-50 1×1 (256→64 at 56²).

Usage: python benchmarks/ops/bench_qconv2d_out_types.py [--threads 1 2] [--repeat 15] [-o out.json]
"""
import argparse
import json

import torch

from sft_kernels import ops
from sft_kernels.ops.qconv2d import cpu as qcpu
from sft_kernels.ops.qconv2d import reference as ref
from sft_kernels.tools.benchmark import time_interleaved

SHAPES = [("sftnet trunk 64→64 3×3 @128", 64, 64, 3, 128), ("sftnet hr 64→64 3×3 @256", 64, 64, 3, 256),
          ("resnet l1 256→64 1×1 @56", 256, 64, 1, 56)]


def conv_args(c, k, r, hw, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (1, c, hw, hw), dtype=torch.uint8, generator=g).contiguous(
        memory_format=torch.channels_last)
    w = torch.randint(-127, 128, (k, c, r, r), dtype=torch.int8, generator=g)
    ws, b = torch.rand(k, generator=g) * 0.002 + 0.0005, torch.randn(k, generator=g) * 0.1
    res = torch.randint(0, 256, (1, k, hw, hw), dtype=torch.uint8, generator=g).contiguous(
        memory_format=torch.channels_last)
    return x, w, ws, b, res


def candidates(c, k, r, hw) -> dict:
    """{name: fn} in pairs (store, steps), each pair checked equal, and the default-type floors."""
    x, w, ws, b, res = conv_args(c, k, r, hw)
    kw = dict(padding=r // 2, input_scale=0.02, input_zero_point=3, activation="relu", backend="cpu")
    rq = (0.03, 120)
    res_f = ref.dequantize(res, *rq).contiguous(memory_format=torch.channels_last)

    def conv(**more):
        return ops.qconv2d(x, w, ws, b, **kw, **more)

    fns = {
        "uint8 out": lambda: conv(out_scale=0.05, out_zero_point=10),
        "int8 out, store": lambda: conv(out_scale=0.05, out_zero_point=-118, out_dtype=torch.int8),
        "int8 out, steps": lambda: torch.bitwise_xor(conv(out_scale=0.05, out_zero_point=10), 128).view(torch.int8),
        "float32 out": lambda: conv(),
        "bfloat16 out, store": lambda: conv(out_dtype=torch.bfloat16),
        "bfloat16 out, steps": lambda: conv().to(torch.bfloat16),
        "uint8 residual, store": lambda: conv(residual=res, residual_quant=rq, out_scale=0.05, out_zero_point=10),
        "uint8 residual, steps": lambda: conv(residual=ref.dequantize(res, *rq), out_scale=0.05, out_zero_point=10),
        "float residual": lambda: conv(residual=res_f, out_scale=0.05, out_zero_point=10),
    }
    for kind in ("int8 out", "bfloat16 out", "uint8 residual"):
        assert torch.equal(fns[f"{kind}, store"](), fns[f"{kind}, steps"]()), kind
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("-o", "--output", help="JSON file for the rows")
    args = p.parse_args(argv)
    print(f"int8 kernel: {qcpu.kernel()}")
    print(f"{'thr':>3s} {'shape':28s} {'candidate':24s} {'ms':>8s} {'GOP/s':>7s} {'store vs steps':>14s}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, c, k, r, hw in SHAPES:
            with torch.no_grad():
                t = time_interleaved(candidates(c, k, r, hw), repeat=args.repeat)
            ops_ = 2 * c * k * r * r * hw * hw
            for cand, sec in t.items():
                kind, _, how = cand.partition(", ")
                gain = t[f"{kind}, steps"] / sec if how == "store" else None
                rows.append(dict(threads=threads, shape=name, candidate=cand, ms=sec * 1e3, gops=ops_ / sec / 1e9,
                                 store_vs_steps=gain))
                print(f"{threads:3d} {name:28s} {cand:24s} {sec * 1e3:8.3f} {ops_ / sec / 1e9:7.0f} "
                      f"{'' if gain is None else f'{gain:13.2f}x'}", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(kernel=qcpu.kernel(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
