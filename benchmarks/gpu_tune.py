"""Sweep the Triton conv2d tile configs of this GPU on catalog shapes, most-run layers first, within a time budget.

Each shape's result (every candidate's time, the winner) is printed and appended to --out as soon as it is
measured; winners go to the tune cache (SFT_KERNELS_CACHE_DIR, see sft_kernels/ops/conv2d/triton_tune.py), which the
benchmark and the ops then use.
With --cuda it sweeps the CUDA kernel's tile configs instead (pinned one by one with SFT_KERNELS_CUDA_CONFIG)
and records the kernel heuristic's own pick beside the fastest: there is no CUDA tune cache yet, so this is data
for the heuristic in csrc/cuda/conv2d.cu.
Usage: python benchmarks/gpu_tune.py --out tune.jsonl [--catalog sftnet] [--batch 16] [--budget-s 120] [--cuda]
"""
import argparse
import json
import os
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
    p.add_argument("--cuda", action="store_true", help="sweep the CUDA kernel's tile configs instead of Triton's")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_tune: no CUDA GPU: nothing to tune")
        return 0
    from sft_kernels.tools.shapes import resnet50_conv_shapes, sftnet_conv_shapes
    from sft_kernels.ops.conv2d import triton_tune as tune

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
            if args.cuda:
                row = sweep_cuda(s)
                print(" ", json.dumps(row)[:400], flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                continue
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


def sweep_cuda(s) -> dict:
    import triton.testing

    from sft_kernels import ops
    from sft_kernels.ops.conv2d import cuda as cuda_conv

    x = torch.randn(s.n, s.c, s.h, s.w, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    w = torch.randn(s.k, s.c, s.r, s.s, device="cuda", dtype=torch.half)
    results = {}
    for name, _ in cuda_conv.tile_configs():
        os.environ["SFT_KERNELS_CUDA_CONFIG"] = name
        try:
            fn = lambda: ops.conv2d(x, w, None, s.stride, s.padding, backend="cuda")  # noqa: E731
            results[name] = triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")
        except Exception as e:  # noqa: BLE001
            results[name] = f"failed: {type(e).__name__}: {str(e)[:80]}"
        finally:
            del os.environ["SFT_KERNELS_CUDA_CONFIG"]
    p, q = s.pq
    names = [name for name, _ in cuda_conv.tile_configs()]
    pick = names[int(torch.ops.sft_cuda.choose_tile_config(s.n, p, q, s.k, s.groups))]
    timed = {k: v for k, v in results.items() if isinstance(v, float)}
    return dict(kind="cuda_tiles", shape=s.name, batch=s.n, heuristic=pick, best=min(timed, key=timed.get),
                results=results)


if __name__ == "__main__":
    sys.exit(main())
