"""sft.qconv2d_winograd (the int8 3×3 conv in the Winograd domain, F(2×2, 3×3)) against the direct int8 conv
(sft.qconv2d), PyTorch's quantized x86 engine (torch.ao.nn.quantized.Conv2d) and our best fp32 conv, on every
Winograd-eligible shape of the catalogs (3×3, stride 1, padding 1, ungrouped, 16+ channels in and out): uint8 in and
out, channels_last, interleaved medians. GOP/s count the direct conv's 2·C·K·9 operations per output (what the
shape needs, not what the kernel does); "err" is each int8 output's relative L2 error against the float conv of the
same uint8 input (uniform random maps: the Winograd domain's worst case; photos' maps are smoother).
Usage: python benchmarks/ops/bench_qconv2d_winograd.py [--threads 1 2] [--catalog sftnet resnet50] [-o out.json]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.ops.qconv2d import cpu as qcpu
from sft_kernels.ops.qconv2d.reference import dequantize
from sft_kernels.ops.qconv2d_winograd import calibrate_mult, winograd_weight
from sft_kernels.tools.bench_suite import qconv_candidates, qconv_case, time_qconv
from sft_kernels.tools.shapes import CONV_CATALOGS


def eligible(s) -> bool:
    return ((s.r, s.s) == (3, 3) and s.stride in (1, (1, 1)) and s.padding in (1, (1, 1)) and s.dilation in (1, (1, 1))
            and s.groups == 1 and s.c >= 16 and s.k >= 16)


def candidates(s) -> tuple:
    """({name: fn}, {name: relative error}) for one shape: qconv_candidates' (torch.ao, direct int8, fp32) and the
    Winograd form on the same uint8 input, weights and output quantization."""
    fns, d = qconv_candidates(s), qconv_case(s)
    u_q, u_scale = winograd_weight(d.wd)
    mult = calibrate_mult([d.xu8], d.xz)
    kw = dict(input_scale=d.xs, input_zero_point=d.xz, out_scale=d.os_, out_zero_point=d.oz)
    fns["sft int8 winograd"] = lambda: ops.qconv2d_winograd(d.xu8, u_q, u_scale, mult, d.b, backend="cpu", **kw)
    f = F.conv2d(dequantize(d.xu8, d.xs, d.xz), d.w, d.b, padding=1)
    err = {name: float((dequantize(fns[name](), d.os_, d.oz) - f).norm() / f.norm())
           for name in ("sft int8", "sft int8 winograd")}
    return fns, err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--catalog", nargs="+", default=["sftnet", "resnet50"], choices=list(CONV_CATALOGS))
    p.add_argument("--lr", type=int, default=128, help="SFTNet's LR size (its layers scale with it)")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows = []
    print(f"int8 kernel: {qcpu.kernel()}")
    print(f"{'thr':>3s} {'shape':28s} {'torch.ao ms':>11s} {'direct ms':>9s} {'wino ms':>8s} {'GOP/s':>6s} "
          f"{'vs torch.ao':>11s} {'vs direct':>9s} {'vs fp32 best':>12s} {'err direct':>10s} {'err wino':>8s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for cat in args.catalog:
            shapes = CONV_CATALOGS[cat](args.lr) if cat == "sftnet" else CONV_CATALOGS[cat]()
            for s in filter(eligible, shapes):
                fns, err = candidates(s)
                with torch.no_grad():
                    t = time_qconv(fns, repeat=args.repeat)
                tw = t["sft int8 winograd"]
                row = dict(threads=threads, catalog=cat, shape=s.name, count=s.count, flops=s.flops,
                           ms={k: v * 1e3 for k, v in t.items()}, vs_direct=t["sft int8"] / tw,
                           vs_torch=t["torch.ao int8"] / tw if "torch.ao int8" in t else None,
                           vs_fp32_best=t["sft fp32 best"] / tw, gops=s.flops / tw / 1e9, rel_err=err)
                rows.append(row)
                ao = f"{t['torch.ao int8'] * 1e3:11.3f}" if "torch.ao int8" in t else f"{'-':>11s}"
                vs_ao = f"{row['vs_torch']:10.2f}x" if row["vs_torch"] else f"{'-':>11s}"
                print(f"{threads:3d} {cat[:6] + ' ' + s.name:28s} {ao} {t['sft int8'] * 1e3:9.3f} {tw * 1e3:8.3f} "
                      f"{row['gops']:6.0f} {vs_ao} {row['vs_direct']:8.2f}x {row['vs_fp32_best']:11.2f}x "
                      f"{err['sft int8']:10.4f} {err['sft int8 winograd']:8.4f}", flush=True)
            sub = [r for r in rows if r["threads"] == threads and r["catalog"] == cat]
            if not sub:
                continue
            tw = sum(r["ms"]["sft int8 winograd"] * r["count"] for r in sub)
            td = sum(r["ms"]["sft int8"] * r["count"] for r in sub)
            line = f"{threads:3d} {cat + ' summed (x count)':28s}"
            if all("torch.ao int8" in r["ms"] for r in sub):
                ta = sum(r["ms"]["torch.ao int8"] * r["count"] for r in sub)
                line += f" {ta:11.3f} {td:9.3f} {tw:8.3f} {'':6s} {ta / tw:10.2f}x {td / tw:8.2f}x"
            else:
                line += f" {'-':>11s} {td:9.3f} {tw:8.3f} {'':6s} {'-':>11s} {td / tw:8.2f}x"
            print(line)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(kernel=qcpu.kernel(), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
