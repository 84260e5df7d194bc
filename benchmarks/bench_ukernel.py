"""How close the direct conv gets to what its own micro-kernel can do: the % of peak figures, read against the
right ceiling.

Each round measures, in one process and in a fresh random order: the FMA loop (no loads: the "peak" every %
figure uses), the cpu backend's micro-kernel alone with its packed panels in cache at several depths K
(K = 576 is a 64-channel 3×3 conv, whose 72 KB B panel streams from L2 as it does in the convs), and the trunk
conv 64→64 3×3 @128² through our direct path and through oneDNN (F.conv2d, channels_last). Each figure is taken
against the same round's peak; medians and min–max over the rounds are printed.
Run: python benchmarks/bench_ukernel.py [--threads 1 2] [--rounds 7] [-o out.json]
"""
import argparse
import json
import random
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from sft_kernels import backends, ops
from sft_kernels.tools.benchmark import format_table, time_interleaved

DEPTHS = (64, 256, 576, 1152)
CEILING = "ukernel K=576"  # the trunk conv's own depth: what its micro-kernel does with operands in cache
TRUNK = (1, 64, 128, 128, 64)  # n, c, h, w, k of SFTNet's trunk conv at a 128² LR input


def _conv_gflops(seconds: float) -> float:
    n, c, h, w, k = TRUNK
    return 2 * n * k * c * 9 * h * w / seconds / 1e9


def one_round(rng: random.Random, x, wt, b) -> dict:
    cpu = torch.ops.sft_cpu
    fns = {"peak": lambda: cpu.fma_peak_gflops(2_000_000)}
    for k in DEPTHS:
        fns[f"ukernel K={k}"] = lambda k=k: max(cpu.ukernel_ceiling_gflops(k, 4_000_000 // k) for _ in range(2))
    convs = {"sft direct": lambda: ops.conv2d(x, wt, b, 1, 1, backend="cpu", algorithm="direct"),
             "oneDNN": lambda: F.conv2d(x, wt, b, 1, 1)}
    order = list(fns) + ["convs"]
    rng.shuffle(order)
    out = {}
    for name in order:
        if name == "convs":
            times = time_interleaved(convs, repeat=10, warmup=1, min_time=0.5, seed=rng.randrange(1 << 30))
            out.update({k: _conv_gflops(t) for k, t in times.items()})
        else:
            out[name] = fns[name]()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("-o", "--output", help="write the rounds and the table as JSON")
    args = p.parse_args(argv)
    if backends.cpu_ext() is None:
        print("cpu backend not built: nothing to measure", file=sys.stderr)
        return 1
    n, c, h, w, k = TRUNK
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c, 3, 3), torch.randn(k)
    rng = random.Random(0)
    body, result = [], {"isa": torch.ops.sft_cpu.gemm_config(), "rounds": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.ops.sft_cpu.fma_peak_gflops(200_000)  # warm up the frequency
        rounds = []
        for _ in range(args.rounds):
            rounds.append(one_round(rng, x, wt, b))
            time.sleep(0.05)
        result["rounds"][threads] = rounds
        body.append([threads, "FMA loop (peak)", f"{statistics.median(r['peak'] for r in rounds):.0f}", "100%", "",
                     ""])
        for name in [f"ukernel K={k}" for k in DEPTHS] + ["sft direct", "oneDNN"]:
            pct = [100 * r[name] / r["peak"] for r in rounds]
            of_kernel = statistics.median(100 * r[name] / r[CEILING] for r in rounds)
            body.append([threads, name, f"{statistics.median(r[name] for r in rounds):.0f}",
                         f"{statistics.median(pct):.1f}%", f"{min(pct):.1f}-{max(pct):.1f}%", f"{of_kernel:.1f}%"])
    table = format_table(body, ["threads", "what", "GFLOP/s", "% of peak (median)", "min-max",
                                f"% of {CEILING}"])
    print(table)
    if args.output:
        result["table"] = table
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
