"""SFTNet 1×3×128×128 -> ×4 end to end: eager PyTorch (NCHW and channels_last), torch.compile, and the model
converted to sft_kernels (cpu backend, and backend=None's measured per-layer choice), side by side.

Run: python benchmarks/models/bench_sftnet.py [--threads 1 2] [--lr 128] [--repeat 5] [--compile] [-o out.json]
(standalone, not a pytest-benchmark suite: each candidate runs interleaved with the others in one process.)
"""
import argparse
import copy
import json
import sys

import torch

import sft_kernels
from sft_kernels.tools.benchmark import format_table, measure_peak_gflops, time_interleaved
from sft_kernels.metrics import conv_macs
from sft_kernels.models import SFTNet


def candidates(lr: int, use_compile: bool):
    torch.manual_seed(0)
    base = SFTNet().reset_parameters_(seed=0).eval()
    x = torch.rand(1, 3, lr, lr)
    xcl = x.contiguous(memory_format=torch.channels_last)
    cpu = copy.deepcopy(base)
    sft_kernels.convert_(cpu, backend="cpu")
    auto = copy.deepcopy(base)
    sft_kernels.convert_(auto)
    fns = {
        "eager nchw": lambda: base(x),
        "eager channels_last": lambda: base(xcl),
        "sft cpu channels_last": lambda: cpu(xcl),
        "sft auto channels_last": lambda: auto(xcl),
    }
    outputs = {"sft cpu channels_last": lambda: cpu(xcl), "sft auto channels_last": lambda: auto(xcl)}
    if use_compile:  # inductor with freezing (weights folded as constants), the strongest eager-free baseline
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        comp = torch.compile(copy.deepcopy(base).to(memory_format=torch.channels_last))
        fns["torch.compile+freezing channels_last"] = lambda: comp(xcl)
    return base, x, fns, outputs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="include torch.compile (slow to warm up)")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows, meta = [], {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak, how = measure_peak_gflops()
        base, x, fns, outputs = candidates(args.lr, args.compile)
        flops = 2 * conv_macs(base, x)
        with torch.no_grad():
            ref = base(x)
            for name, f in outputs.items():
                err = (f() - ref).abs().max().item()
                assert err < 1e-3 * max(1.0, ref.abs().max().item()), (name, err)
            times = time_interleaved(fns, repeat=args.repeat, warmup=2)
        best_eager = min(times["eager nchw"], times["eager channels_last"])
        compiled = next((v for k, v in times.items() if k.startswith("torch.compile")), None)
        for name, t in times.items():
            gf = flops / t / 1e9
            rows.append(dict(threads=threads, impl=name, ms=t * 1e3, gflops=gf, pct_peak=100 * gf / peak,
                             vs_best_eager=best_eager / t, vs_compile=compiled / t if compiled else None))
        meta[threads] = dict(peak_gflops=peak, peak_how=how, conv_gflop=flops / 1e9)
    print(format_table([[r["threads"], r["impl"], f"{r['ms']:.1f}", f"{r['gflops']:.0f}", f"{r['pct_peak']:.0f}%",
                         f"{r['vs_best_eager']:.2f}x", f"{r['vs_compile']:.2f}x" if r["vs_compile"] else "-"]
                        for r in rows],
                       ["threads", "impl", "ms", "conv GFLOP/s", "% peak", "vs best eager", "vs compile"]))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(meta=meta, rows=rows, torch=torch.__version__), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
