"""Strassen–Winograd (cpu backend, levels 1 and 2) vs our own GEMM and torch.matmul, plus error growth.

For each square size n: interleaved medians of plain GEMM (sft cpu), torch.matmul, and Strassen with 1 and 2
levels (cutoff 0, so the level count is exact); the crossover is the smallest n where one level beats our
GEMM. Error: max |C - C64| / (|A|·|B| scale) against a float64 product, per level, showing the growth that
Strassen's extra additions bring. Theory allows 8/7 per level at best.
Run: python benchmarks/ops/bench_strassen.py [--sizes 512 1024 2048 4096] [--threads 1] [-o out.json]
"""
import argparse
import json
import sys

import torch

from sft_kernels import backends
from sft_kernels.tools.benchmark import format_table, time_interleaved
from sft_kernels.ops import matmul, strassen_matmul


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    if not backends.supports("cpu", "strassen_matmul", "cpu", torch.float32):
        print("cpu backend not built")
        return 1
    torch.set_num_threads(args.threads)
    rows, crossover = [], None
    for n in args.sizes:
        torch.manual_seed(n)
        a, b = torch.randn(n, n), torch.randn(n, n)
        exact = a.double() @ b.double()
        scale = (a.abs().max() * b.abs().max()).item() * n ** 0.5
        fns = {
            "sft gemm": lambda: matmul(a, b, backend="cpu"),
            "torch.matmul": lambda: torch.matmul(a, b),
            "strassen L1": lambda: strassen_matmul(a, b, levels=1, cutoff=0, backend="cpu"),
            "strassen L2": lambda: strassen_matmul(a, b, levels=2, cutoff=0, backend="cpu"),
        }
        times = time_interleaved(fns, repeat=args.repeat, warmup=1)
        for name, f in fns.items():
            err = (f().double() - exact).abs().max().item() / scale
            rows.append(dict(n=n, impl=name, ms=times[name] * 1e3, gflops=2 * n ** 3 / times[name] / 1e9,
                             vs_sft_gemm=times["sft gemm"] / times[name], rel_err=err))
        if crossover is None and times["strassen L1"] < times["sft gemm"]:
            crossover = n
    print(format_table([[r["n"], r["impl"], f"{r['ms']:.1f}", f"{r['gflops']:.0f}", f"{r['vs_sft_gemm']:.2f}x",
                         f"{r['rel_err']:.1e}"] for r in rows],
                       ["n", "impl", "ms", "GFLOP/s (2n³)", "vs sft gemm", "max err / (|A||B|√n)"]))
    print(f"crossover (one level faster than our GEMM): n = {crossover if crossover else 'not reached'}; "
          f"{args.threads} thread(s)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(rows=rows, crossover=crossover, threads=args.threads), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
