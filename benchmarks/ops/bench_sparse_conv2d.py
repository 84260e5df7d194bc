"""sft.sparse_conv2d (the cpu sparse kernel) at sparsities 0-95 %, unstructured and in blocks of 4 output channels,
against our dense direct conv and our Winograd conv on the same channels_last input, interleaved medians; the
same sweep as `sft-kernels bench --sparse` (sft_kernels/tools/bench_sparse.py), at 1 and 2 threads.
Usage: python benchmarks/ops/bench_sparse_conv2d.py [--threads 1 2] [--quick] [-o out.json] [--plot out.png]
"""
import argparse
import json

import torch

from sft_kernels.ops.sparse_conv2d import cpu
from sft_kernels.tools import bench_sparse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("-o", "--output")
    p.add_argument("--plot", help="PNG of the speed-up over sparsity (threads of the first run)")
    args = p.parse_args(argv)
    print(f"sparse tile kernels: {cpu.kernel()}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        got = bench_sparse.run(args.quick, args.repeat)
        print(f"{threads} thread(s)\n" + bench_sparse.table(got), flush=True)
        rows += got
        if args.plot and threads == args.threads[0]:
            bench_sparse.plot(got, args.plot)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"kernel": cpu.kernel(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
