"""GPU benchmark: sft conv2d backends (Triton, CUDA when built) vs cuDNN, fp16, channels_last.

triton.testing.do_bench medians (it flushes L2 between runs); cuDNN with cudnn.benchmark=True; TF32 settings
recorded. TFLOP/s use direct-conv FLOPs. Prints a short table last and writes JSON next to the log.
Usage: python benchmarks/gpu_bench.py [--batch 1 16] [--lr 128 256] [--e2e-lr 128] [--out benchmarks/results/x.json]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--lr", type=int, nargs="+", default=[128], help="LR sizes for the per-conv table")
    p.add_argument("--e2e-lr", dest="e2e_lr", type=int, default=128, help="LR size of the end-to-end SFTNet runs")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to benchmark")
        return 0
    import triton.testing

    from sft_kernels import backends, convert_, ops
    from sft_kernels.metrics import conv_macs
    from sft_kernels.models import SFTNet
    from sft_kernels.shapes import sftnet_conv_shapes

    torch.backends.cudnn.benchmark = True
    meta = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, cuda=torch.version.cuda,
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                backends=backends.available())
    # Measured tensor-core peak: a large fp16 cuBLAS GEMM (fp32 accumulate).
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.half)
    t_mm = triton.testing.do_bench(lambda: a @ a, return_mode="median")
    meta["fp16_gemm_peak_tflops"] = peak = 2 * 8192**3 / t_mm / 1e9
    with torch.no_grad():  # SFTNet conv FLOPs per image (counted by hooks, on the CPU)
        e2e_flops = 2 * conv_macs(SFTNet("pytorch").eval(), torch.zeros(1, 3, args.e2e_lr, args.e2e_lr))
    print(meta)
    names = [b for b in ("triton", "cuda") if backends.supports(b, "conv2d", "cuda", torch.float16)]
    rows = []
    for n, lr in ((n, lr) for lr in args.lr for n in args.batch):
        for s in sftnet_conv_shapes(lr=lr, n=n):
            x = torch.randn(s.n, s.c, s.h, s.w, device="cuda", dtype=torch.half).contiguous(
                memory_format=torch.channels_last)
            w = torch.randn(s.k, s.c // s.groups, s.r, s.s, device="cuda", dtype=torch.half)
            b = torch.randn(s.k, device="cuda", dtype=torch.half)
            a = (s.stride, s.padding, 1, s.groups)
            t_ref = triton.testing.do_bench(lambda: F.conv2d(x, w, b, *a), return_mode="median")
            for name in names:
                t = triton.testing.do_bench(lambda: ops.conv2d(x, w, b, *a, backend=name), return_mode="median")
                rows.append(dict(batch=n, shape=f"{s.name} @{lr}", backend=name, ms=t, cudnn_ms=t_ref,
                                 tflops=s.flops / t / 1e9, cudnn_tflops=s.flops / t_ref / 1e9, vs_cudnn=t_ref / t))
    # End to end: SFTNet fp16, eager cuDNN vs converted (eager and replayed from a CUDA graph).
    from sft_kernels.models import compile_for_inference

    for n in args.batch:
        model = SFTNet("pytorch").reset_parameters_(seed=0).cuda().half().eval()
        x = torch.rand(n, 3, args.e2e_lr, args.e2e_lr, device="cuda", dtype=torch.half).contiguous(
            memory_format=torch.channels_last)
        with torch.no_grad():
            t_ref = triton.testing.do_bench(lambda: model(x), return_mode="median")
            g_ref = compile_for_inference(model, x)
            runs = [("cudnn+graph", lambda: g_ref(x))]
            for name in names:
                m = SFTNet("pytorch").reset_parameters_(seed=0).cuda().half().eval()
                convert_(m, backend=name)
                g = compile_for_inference(m, x)
                runs += [(name, lambda m=m: m(x)), (f"{name}+graph", lambda g=g: g(x))]
            for name, fn in runs:
                t = triton.testing.do_bench(fn, return_mode="median")
                rows.append(dict(batch=n, shape=f"SFTNet e2e {args.e2e_lr}->x4", backend=name, ms=t, cudnn_ms=t_ref,
                                 tflops=e2e_flops * n / t / 1e9, cudnn_tflops=e2e_flops * n / t_ref / 1e9,
                                 vs_cudnn=t_ref / t))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print(f"\nfp16 tensor-core peak (cuBLAS 8192^3 GEMM): {peak:.0f} TFLOP/s")
    print(f"{'batch':>5}  {'shape':28s} {'backend':12s} {'ms':>8s} {'cuDNN ms':>9s} {'TFLOP/s':>8s} {'% peak':>7s} "
          f"{'vs cuDNN':>8s}")
    for r in rows:
        print(f"{r['batch']:>5}  {r['shape']:28s} {r['backend']:12s} {r['ms']:8.3f} {r['cudnn_ms']:9.3f} "
              f"{r['tflops']:8.1f} {100 * r['tflops'] / peak:6.1f}% {r['vs_cudnn']:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
