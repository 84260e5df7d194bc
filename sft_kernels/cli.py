"""The `sft-kernels` command: info, demo, bench."""
from __future__ import annotations

import argparse
import platform
import sys

import torch


def _cpu_features() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    want = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"]
    return " ".join(f for f in want if f in flags) or "none of " + ",".join(want)


def cmd_info(args) -> int:
    from . import __version__, backends

    print(f"sft_kernels {__version__}  python {platform.python_version()}  torch {torch.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton not installed")
    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"SIMD: {_cpu_features()}")
    print(f"CUDA: torch built with {torch.version.cuda or 'no CUDA'}; GPU visible: {torch.cuda.is_available()}")
    if backends.cpu_ext() is not None:
        print(f"GEMM engine: {torch.ops.sft_cpu.gemm_config()}")
    print("backends:")
    for name, (ok, why) in backends.status().items():
        print(f"  {name:10s} {'available' if ok else 'missing  '}  {why}")
    return 0


def cmd_demo(args) -> int:
    from . import demo

    if args.threads:
        torch.set_num_threads(args.threads)
    demo.run(image=args.image, lr_size=args.lr_size, out_dir=args.out, repeat=args.repeat, crop=args.crop)
    return 0


def cmd_bench(args) -> int:
    from . import bench_suite
    from .benchmark import measure_peak_gflops

    if args.threads:
        torch.set_num_threads(args.threads)
    peak, how = measure_peak_gflops()
    print(f"{torch.get_num_threads()} thread(s); measured fp32 peak {peak:.0f} GFLOP/s ({how})")
    rows = []
    if args.op in ("conv2d", "all"):
        rows += bench_suite.run_conv(args.quick, args.repeat, peak=peak)
    if args.op in ("matmul", "all"):
        rows += bench_suite.run_matmul(args.quick, args.repeat, peak=peak)
    print(bench_suite.table(rows))
    meta = dict(threads=torch.get_num_threads(), peak_gflops=peak, peak_how=how, torch=torch.__version__,
                cpu=_cpu_features())
    for path in args.output or []:
        bench_suite.save(rows, path, meta)
        print(f"wrote {path}")
    if args.plot:
        bench_suite.plot(rows, args.plot, peak)
        print(f"wrote {args.plot}")
    return 0


def cmd_train(args) -> int:
    import dataclasses

    from .train import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    train(cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sft-kernels", description="Fast CNN inference kernels for PyTorch: "
                                "inspect backends, run the SFTNet demo, benchmark against PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="versions, CPU SIMD features, backends and why any is missing")
    s.set_defaults(fn=cmd_info)

    s = sub.add_parser("demo", help="upscale a real photo x4 with SFTNet on every available backend",
                       description="Upscale a photo bundled with scikit-image x4 with SFTNet on every backend "
                       "available here, check that all outputs agree with eager PyTorch, print time per backend "
                       "and save the images.")
    s.add_argument("--image", default="astronaut", help="a scikit-image photo name or an image path")
    s.add_argument("--lr-size", type=int, default=128, help="centre-crop the LR input to this size (0 = whole)")
    s.add_argument("--crop", type=int, default=16, help="LR crop used for the Triton interpreter check")
    s.add_argument("--repeat", type=int, default=3, help="timed runs per backend (median)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("--out", default="demo_out", help="directory for the PNGs")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("bench", help="benchmark every op and backend against PyTorch, side by side",
                       description="Time sft ops against PyTorch (F.conv2d with NCHW and channels_last input, "
                       "torch.matmul) on the SFTNet shape catalog, interleaved in one process, medians.")
    s.add_argument("--op", choices=["conv2d", "matmul", "all"], default="all")
    s.add_argument("--quick", action="store_true", help="small shapes (SFTNet layers at a 32x32 LR input)")
    s.add_argument("--repeat", type=int, default=10, help="interleaved rounds per shape (median)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("-o", "--output", action="append", help="write results (.json or .csv); repeatable")
    s.add_argument("--plot", help="write a PNG bar chart of GFLOP/s")
    s.set_defaults(fn=cmd_bench)

    from .train import TrainConfig

    d = TrainConfig()
    s = sub.add_parser("train", help="train (or distill) SFTNet x4 on the bundled photos; resumable",
                       description="Train SFTNet for x4 SR with L1 loss, Adam and a cosine schedule on photos bundled "
                       "with scikit-image (eval: scikit-learn's china and flower). Re-running with the same --out "
                       "resumes from its last checkpoint. Under torchrun it trains data-parallel (gloo on CPU). "
                       "With --teacher it distills (pixel + trunk-feature losses).")
    s.add_argument("--out", default=d.out, help="run directory (checkpoint last.pt, summary.json)")
    s.add_argument("--variant", default=d.variant, choices=["pytorch", "torch"])
    s.add_argument("--num-blocks", dest="num_blocks", type=int, default=d.num_blocks)
    s.add_argument("--channels", type=int, default=d.channels)
    s.add_argument("--steps", type=int, default=d.steps)
    s.add_argument("--batch", type=int, default=d.batch, help="patches per step (per process)")
    s.add_argument("--patch", type=int, default=d.patch, help="LR patch size (HR is 4x)")
    s.add_argument("--lr", type=float, default=d.lr)
    s.add_argument("--min-lr", dest="min_lr", type=float, default=d.min_lr)
    s.add_argument("--warmup", type=int, default=d.warmup)
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--eval-every", dest="eval_every", type=int, default=d.eval_every)
    s.add_argument("--ckpt-every", dest="ckpt_every", type=int, default=d.ckpt_every)
    s.add_argument("--threads", type=int, default=d.threads, help="torch threads per process (0 = default)")
    s.add_argument("--device", default=d.device)
    s.add_argument("--teacher", default=d.teacher, help="teacher weights: distill into this model")
    s.add_argument("--w-out", dest="w_out", type=float, default=d.w_out, help="pixel distillation weight")
    s.add_argument("--w-feat", dest="w_feat", type=float, default=d.w_feat, help="feature distillation weight")
    s.set_defaults(fn=cmd_train)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"sft-kernels {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
