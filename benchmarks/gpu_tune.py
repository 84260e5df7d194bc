"""Sweep the Triton conv2d tile configs of this GPU on catalog shapes, most-run layers first, within a time budget.

Each shape's result (every candidate's time, the winner) is printed and appended to --out as soon as it is
measured; winners go to the tune cache (SFT_KERNELS_CACHE_DIR, see sft_kernels/triton/tune.py), which the
benchmark and the ops then use.
Usage: python benchmarks/gpu_tune.py --out tune.jsonl [--catalog sftnet] [--batch 16] [--budget-s 120]
"""
import argparse
import json
import sys
import time

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalog", nargs="+", default=["sftnet"], choices=["sftnet", "resnet50"])
    p.add_argument("--batch", type=int, nargs="+", default=[16])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--budget-s", dest="budget", type=float, default=120.0, help="stop starting shapes after this")
    p.add_argument("--out", default=None, help="JSON-lines file the results are appended to")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_tune: no CUDA GPU: nothing to tune")
        return 0
    from sft_kernels.shapes import resnet50_conv_shapes, sftnet_conv_shapes
    from sft_kernels.triton import tune

    shapes = []
    for cat in args.catalog:
        for n in args.batch:
            shapes += sftnet_conv_shapes(lr=args.lr, n=n) if cat == "sftnet" else resnet50_conv_shapes(n=n)
    shapes.sort(key=lambda s: -s.count * s.flops)  # where the time goes first
    t0 = time.time()
    for s in shapes:
        if time.time() - t0 > args.budget:
            print(f"gpu_tune: budget of {args.budget:.0f} s spent; {s.name} and later not tuned")
            break
        try:
            out = tune.tune_conv2d(s.n, s.c, s.h, s.w, s.k, s.r, s.s, s.stride, s.padding, dtype=torch.float16,
                                   force=True)
            row = dict(shape=s.name, batch=s.n, key=out["key"], best=out["config"],
                       results={name: t * 1e3 if isinstance(t, float) else t for name, t in out["results"]})
        except Exception as e:  # noqa: BLE001 - record, go on
            row = dict(shape=s.name, batch=s.n, error=f"{type(e).__name__}: {e}")
        print(" ", json.dumps(row)[:400], flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"gpu_tune: cache {tune.cache_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
