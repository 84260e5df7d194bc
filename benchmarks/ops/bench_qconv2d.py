"""sft.qconv2d (the cpu int8 kernel: AMX / VNNI / portable, whichever this CPU runs) against PyTorch's quantized x86
engine (torch.ao.nn.quantized.Conv2d: uint8 activations, per-channel int8 weights, requantized uint8 output,
channels_last) on the same scheme and inputs, and against our own fp32 direct conv (sft.conv2d, algorithm="direct")
and our best fp32 conv (algorithm auto: Winograd where it pays). Ours is timed two ways: the op called with plain
tensors ("sft int8") and the QuantConv2d module a quantized model holds ("module": its call bound, as torch.ao's
module is the vendor's call as users make it). Interleaved medians (the int8 convs with each other, the fp32 ones
apart: bench_suite.time_qconv), GOP/s, ratios side by side.
Usage: python benchmarks/ops/bench_qconv2d.py [--threads 1 2] [--catalog sftnet resnet50] [-o out.json]
"""
import argparse
import json
import sys

import torch

from sft_kernels.ops.qconv2d import cpu as qcpu
from sft_kernels.tools.bench_suite import qconv_candidates, time_qconv
from sft_kernels.tools.shapes import CONV_CATALOGS


def candidates(s):
    return qconv_candidates(s)  # sft_kernels.tools.bench_suite: shared with `sft-kernels bench --op qconv2d`


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--catalog", nargs="+", default=["sftnet", "resnet50"], choices=list(CONV_CATALOGS))
    p.add_argument("--lr", type=int, default=128, help="SFTNet's LR size (its layers scale with it)")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows = []
    print(f"int8 kernel: {qcpu.kernel()}")
    print(f"{'thr':>3s} {'shape':28s} {'torch.ao ms':>11s} {'sft int8 ms':>11s} {'GOP/s':>7s} {'vs torch.ao':>11s} "
          f"{'module ms':>9s} {'module vs ao':>12s} {'vs fp32 direct':>14s} {'vs fp32 best':>12s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for cat in args.catalog:
            shapes = CONV_CATALOGS[cat](args.lr) if cat == "sftnet" else CONV_CATALOGS[cat]()
            for s in shapes:
                with torch.no_grad():
                    t = time_qconv(candidates(s), repeat=args.repeat)
                row = dict(threads=threads, catalog=cat, shape=s.name, count=s.count, flops=s.flops,
                           ms={k: v * 1e3 for k, v in t.items()}, vs_torch=t["torch.ao int8"] / t["sft int8"],
                           module_vs_torch=t["torch.ao int8"] / t["sft int8 module"],
                           vs_fp32_direct=t["sft fp32 direct"] / t["sft int8"],
                           vs_fp32_best=t["sft fp32 best"] / t["sft int8"], gops=s.flops / t["sft int8"] / 1e9)
                rows.append(row)
                print(f"{threads:3d} {cat[:6] + ' ' + s.name:28s} {t['torch.ao int8'] * 1e3:11.3f} "
                      f"{t['sft int8'] * 1e3:11.3f} {row['gops']:7.0f} {row['vs_torch']:10.2f}x "
                      f"{t['sft int8 module'] * 1e3:9.3f} {row['module_vs_torch']:11.2f}x "
                      f"{row['vs_fp32_direct']:13.2f}x {row['vs_fp32_best']:11.2f}x", flush=True)
            sub = [r for r in rows if r["threads"] == threads and r["catalog"] == cat]
            tt = sum(r["ms"]["torch.ao int8"] * r["count"] for r in sub)
            to = sum(r["ms"]["sft int8"] * r["count"] for r in sub)
            tm = sum(r["ms"]["sft int8 module"] * r["count"] for r in sub)
            print(f"{threads:3d} {cat + ' summed (x count)':28s} {tt:11.3f} {to:11.3f} {'':7s} {tt / to:10.2f}x "
                  f"{tm:9.3f} {tt / tm:11.2f}x")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(kernel=qcpu.kernel(), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
