"""The `sft-kernels` command: info, demo, bench."""
from __future__ import annotations

import argparse
import platform
import sys

import torch


def _at_least(least: int):
    """An argparse type: an integer >= least, or argparse's one-line error naming the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    return parse


def _writable(paths) -> str:
    """'' if every path's folder exists, else an error line (checked before a long run, not after it)."""
    from pathlib import Path

    missing = [p for p in paths or () if p and not Path(p).expanduser().resolve().parent.is_dir()]
    return f"the folder of {missing[0]!r} does not exist: create it first" if missing else ""


def _cpu_features() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    want = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"]
    return " ".join(f for f in want if f in flags) or "none of " + ",".join(want)


def cmd_info(args) -> int:
    from .. import __version__, backends

    print(f"sft_kernels {__version__}  python {platform.python_version()}  torch {torch.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton not installed")
    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"SIMD: {_cpu_features()}")
    print(f"CUDA: torch built with {torch.version.cuda or 'no CUDA'}; GPU visible: {torch.cuda.is_available()}")
    from ..runtime import knobs

    for problem in knobs.problems(backends.cpu_ext):
        print(f"environment: {problem}")
    if backends.cpu_ext() is not None and not knobs.problems(backends.cpu_ext):
        print(f"GEMM engine: {torch.ops.sft_cpu.gemm_config()}")
        unit = str(torch.ops.sft_cpu.conv2d_bf16_unit())
        bf16 = {"amx": "AMX tiles", "vectors": "AVX512-BF16 vectors"}.get(unit, "none (fp32_precision='bf16' keeps "
                                                                              "float32)")
        print(f"int8 conv kernel: {torch.ops.sft_cpu.qconv2d_kernel()}  "
              f"sparse conv kernels: {torch.ops.sft_cpu.sparse_conv2d_kernel('')}  bf16 convs: {bf16}")
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
    from .benchmark import measure_peak_gflops, measure_ukernel_ceiling

    bad = _writable([*(args.output or []), args.plot])
    if bad:
        print(f"sft-kernels bench: {bad}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    peak, how = measure_peak_gflops()
    print(f"{torch.get_num_threads()} thread(s); measured fp32 peak {peak:.0f} GFLOP/s ({how})")
    ceiling = measure_ukernel_ceiling()
    if ceiling:
        print(f"micro-kernel alone, operands in cache (K = 576): {ceiling:.0f} GFLOP/s = {100 * ceiling / peak:.0f} % "
              "of that peak, the most a direct GEMM or conv built on it can reach")
    if args.sparse:
        from . import bench_sparse

        rows = bench_sparse.run(args.quick, args.repeat)
        print(bench_sparse.table(rows))
        meta = dict(threads=torch.get_num_threads(), peak_gflops=peak, torch=torch.__version__, cpu=_cpu_features())
        for path in args.output or []:
            bench_suite.save(rows, path, meta)
            print(f"wrote {path}")
        if args.plot:
            bench_sparse.plot(rows, args.plot)
            print(f"wrote {args.plot}")
        return 0
    rows = []
    if args.op in ("conv2d", "all"):
        rows += bench_suite.run_conv(args.quick, args.repeat, peak=peak, catalog=args.shapes)
    if args.op in ("matmul", "all"):
        rows += bench_suite.run_matmul(args.quick, args.repeat, peak=peak)
    if args.op in ("qconv2d", "all"):
        rows += bench_suite.run_qconv(args.quick, args.repeat, peak=peak, catalog=args.shapes)
    print(bench_suite.table(rows))
    meta = dict(threads=torch.get_num_threads(), peak_gflops=peak, peak_how=how, ukernel_ceiling_gflops=ceiling,
                torch=torch.__version__,
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

    from ..train import TrainConfig, train

    from ..data.folders import DataError

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    cfg.data = tuple(cfg.data)
    try:
        result = train(cfg)
    except DataError as e:
        print(f"sft-kernels train: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a bad option (checked before anything runs)
        if not str(e).startswith("--"):
            raise
        print(f"sft-kernels train: {e}", file=sys.stderr)
        return 2
    if cfg.qat:  # the int8 model of the trained weights (the EMA's, as evaluated), beside the run
        import shlex
        from pathlib import Path

        from ..models.int8 import save_int8
        from ..transforms.qat import convert_qat_
        from .quantize import eval_pairs

        q = (result["ema"] if result["ema"] is not None else result["model"]).cpu().eval()
        q = q.to(memory_format=torch.contiguous_format)
        convert_qat_(q)
        ev = eval_pairs(q)
        path = save_int8(q, Path(cfg.out) / "int8", dict(name="int8", base=cfg.init, command="sft-kernels " +
                                                        shlex.join(args.argv), psnr_eval=ev, qat=True))
        print(f"QAT int8 model: {', '.join(f'{k} {v:.3f} dB' for k, v in ev.items())}; wrote {path}")
    return 0


def cmd_data(args) -> int:
    from ..data.collect import collect

    try:
        collect(args.out, install=args.install, bundled=not args.no_bundled)
    except RuntimeError as e:
        print(f"sft-kernels data: {e}", file=sys.stderr)
        return 2
    print(f"train on them with: sft-kernels train --data {args.out}")
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    r = build_report(models=args.models, backends=args.backends, out_dir=args.out, lr_size=args.lr_size,
                     threads=args.threads or None, repeat=args.repeat, log=print, photos=args.photos)
    for row in r["rows"]:
        mem, en = row["peak_memory"]["bytes"], row["energy"]["joules"]
        mem = "n/a" if mem is None else f"{mem / 2 ** 20:.1f} MiB"
        en = "n/a" if en is None else f"{en:.3g} J"
        print(f"{row['model']}/{row['backend']} ({row['device']}): PSNR {row['mean_psnr']:.2f} dB, "
              f"{row['latency']['median_s'] * 1e3:.2f} ms, peak memory {mem}, energy {en}")
    print(f"bicubic: PSNR {r['bicubic']['mean_psnr']:.2f} dB")
    files = r["files"]
    print(f"wrote {r['out_dir']}/: {files['markdown']}, {files['json']}, {files['psnr_vs_latency']}"
          + "".join(f", {f}" for f in files["layer_times"].values()))
    return 0


def cmd_upscale(args) -> int:
    import time
    from pathlib import Path

    from .upscale import upscale_file

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.output or str(Path(args.input).with_name(Path(args.input).stem + "_x4.png"))
    backend = None if args.backend == "auto" else args.backend
    t0 = time.perf_counter()
    try:
        info = upscale_file(args.input, out, model_name_or_path=args.model, backend=backend, tile=args.tile,
                            device=args.device, overlap=args.overlap, progress=not args.no_progress,
                            fp32_precision=args.fp32_precision)
    except (torch.OutOfMemoryError, MemoryError):
        raise RuntimeError(f"out of memory upscaling {args.input!r} with --tile {args.tile}; "
                           "try a smaller --tile") from None
    except (FileNotFoundError, ValueError, TypeError, RuntimeError, OSError) as e:
        # One line, whatever the underlying library put in its message; main() prints it.
        kind = next((k for k in (FileNotFoundError, ValueError, TypeError) if isinstance(e, k)), RuntimeError)
        raise kind(" ".join(str(e).split()) or type(e).__name__) from None
    (w, h), (ow, oh) = info["in_size"], info["out_size"]
    print(f"wrote {info['output']}: {ow}x{oh} {info['mode']} ({info['format']}) from {w}x{h}, model "
          f"{args.model}, backend {args.backend}, {info['tiles']} tile(s), {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_tune_gemm(args) -> int:
    from .benchmark import format_table
    from .cpu_tune import sweep_gemm_blocking

    try:
        m, n, k = (int(v) for v in args.shape.split(","))
    except ValueError:
        raise ValueError(f"--shape for --op gemm must be M,N,K (three ints), got {args.shape!r}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    out = sweep_gemm_blocking(m, n, k, repeat=max(args.repeat, 3))
    best = out["rows"][0]
    rows = [[",".join(map(str, r["blocking"])), f"{r['ms']:.3f}", f"{r['gflops']:.1f}", f"{r['vs_torch']:.2f}x",
             ("<- best" if r is best else "") + (" (in force)" if tuple(r["blocking"]) == out["default"] else "")]
            for r in out["rows"]]
    print(f"GEMM {m}x{n}x{k}, {torch.get_num_threads()} thread(s): torch.matmul {out['torch_ms']:.3f} ms; "
          f"blocking in force MC,KC,NC = {','.join(map(str, out['default']))}")
    print(format_table(rows, ["MC,KC,NC", "ms", "GFLOP/s", "vs torch", ""]))
    print(f"(torch.matmul runs once per round of {len(rows) + 1} calls here, with colder caches than in the "
          "two-way `sft-kernels bench`: rank blockings by these ratios, compare with PyTorch there)")
    print(f"apply the best with SFT_KERNELS_GEMM_BLOCKING={','.join(map(str, best['blocking']))} "
          f"(or torch.ops.sft_cpu.set_gemm_blocking({', '.join(map(str, best['blocking']))}))")
    return 0


def cmd_tune(args) -> int:
    from .benchmark import format_table
    from ..ops.conv2d import triton_tune as tune

    if args.op == "gemm":
        return cmd_tune_gemm(args)
    try:
        dims = [int(v) for v in args.shape.split(",")]
    except ValueError:
        raise ValueError(f"--shape must be comma-separated ints N,C,H,W,K[,R,S[,stride,padding]], got {args.shape!r}")
    if len(dims) not in (5, 7, 9):
        raise ValueError(f"--shape must be N,C,H,W,K[,R,S[,stride,padding]], got {args.shape!r}")
    n, c, h, w, k = dims[:5]
    r, s = dims[5:7] if len(dims) >= 7 else (3, 3)
    stride, padding = dims[7:9] if len(dims) == 9 else (1, (r - 1) // 2)
    out = tune.tune_conv2d(n, c, h, w, k, r, s, stride, padding, dtype=getattr(torch, args.dtype),
                           configs=args.configs.split(",") if args.configs else None, repeat=args.repeat,
                           force=args.force)
    rows = [[name, f"{t * 1e3:.3f}" if isinstance(t, float) else t, "<- best" if name == out["config"] else ""]
            for name, t in out["results"]]
    print(f"{out['key']} on {tune.arch()}: " + ("cached result (use --force to re-tune)" if out["cached"] else
                                                 f"tuned, saved to {tune.cache_path()}"))
    print(format_table(rows, ["config", "ms", ""]))
    return 0


def cmd_export(args) -> int:
    from ..train.export import export_run

    path = export_run(args.run, args.name, directory=args.dir, notes=args.notes)
    print(f"wrote {path} and its model card {path.with_suffix('.json')}")
    return 0


def cmd_quantize(args) -> int:
    import shlex

    from ..models.pretrained import resolve_model
    from .quantize import eval_pairs, quantize_model, write

    if args.threads:
        torch.set_num_threads(args.threads)
    base = resolve_model(args.model)
    budget = None if args.budget < 0 else args.budget
    q, report = quantize_model(base, args.calib, args.crops, budget, args.observer, args.fallback,
                               winograd=args.winograd)
    if args.verbose:
        print(report)
    ev, evf = eval_pairs(q), eval_pairs(base)
    for n in ev:
        print(f"PSNR {n} (held out): float {evf[n]:.3f} dB, int8 {ev[n]:.3f} dB ({ev[n] - evf[n]:+.3f})")
    config = dict(observer=args.observer, budget_db=budget, fallback=args.fallback, winograd=args.winograd,
                  crops=args.crops, calib=args.calib or "bundled training photos")
    path = write(q, report, args.output, str(args.model), "sft-kernels " + shlex.join(args.argv), config, ev, evf)
    print(f"wrote {path} and its model card {path.with_suffix('.json')}; use it with --model {path}")
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
    s.add_argument("--repeat", type=_at_least(1), default=3, help="timed runs per backend (median)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("--out", default="demo_out", help="directory for the PNGs")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("bench", help="benchmark every op and backend against PyTorch, side by side",
                       description="Time sft ops against PyTorch (F.conv2d with NCHW and channels_last input, "
                       "torch.matmul) on the SFTNet shape catalog, interleaved in one process (each round in a "
                       "fresh random order), medians.")
    s.add_argument("--op", choices=["conv2d", "matmul", "qconv2d", "all"], default="all",
                   help="qconv2d: the int8 conv against torch.ao's quantized x86 conv (GOP/s; %% peak of 4x the fp32 "
                   "peak, VNNI's int8 rate); all: every op")
    s.add_argument("--shapes", choices=["sftnet", "resnet50", "mobilenetv2", "deeplabv3", "grouped", "wide_depthwise"],
                   default="sftnet",
                   help="conv catalog: SFTNet's layers at a 128x128 LR input, ResNet-50's or MobileNetV2's (depthwise "
                   "convs) at 224x224, DeepLabv3's dilated convs (rates 2-36) on the 32x32 maps of a 256x256 "
                   "input, the grouped 3x3 convs of ResNeXt-50 and RegNet-style stages (2-32 channels per group) "
                   "at 224x224, or the 5x5 / 7x7 depthwise convs of EfficientNet-B0 and ConvNeXt-T at 224x224")
    s.add_argument("--quick", action="store_true",
                   help="small shapes (SFTNet at a 32x32 LR input, the others at a 56x56 input)")
    s.add_argument("--repeat", type=_at_least(1), default=10, help="interleaved rounds per shape (median)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("-o", "--output", action="append", help="write results (.json or .csv); repeatable")
    s.add_argument("--sparse", action="store_true",
                   help="instead: the sparse conv (sft.sparse_conv2d) at sparsities 0-95 %% for unstructured and "
                   "block patterns against our dense direct and Winograd convs; --plot draws the crossover")
    s.add_argument("--plot", help="write a PNG: GFLOP/s bars, or with --sparse the speed-up over sparsity")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("report", help="quality, size, MACs, latency, memory and energy of models per backend",
                       description="Measure SR models on every backend: PSNR/SSIM on the eval photos (and the "
                       "bicubic baseline), parameters, weights-file bytes, conv MACs, latency (median, threads), "
                       "peak memory and energy (hardware counters, or reported unavailable) at a 1x3xLxL input, "
                       "and per-layer times. Writes report.md, report.json, psnr_vs_latency.png and "
                       "layer_times_<model>.png.")
    s.add_argument("--models", nargs="+", default=["teacher"], metavar="MODEL",
                   help="shipped weights names, checkpoint paths (.safetensors/.pth/.pt), or 'bicubic' "
                   "(baseline) (default: teacher)")
    s.add_argument("--backends", nargs="+", default=None, metavar="BACKEND",
                   help="'eager' (the unconverted model) and/or backends (reference, cpu, triton, cuda), each "
                   "optionally NAME@cpu or NAME@cuda (default: eager + every backend available here, without "
                   "the Triton interpreter on CPU-only machines)")
    s.add_argument("--out", default="report", help="output directory (default: report)")
    s.add_argument("--lr-size", dest="lr_size", type=int, default=128,
                   help="LR input size L for MACs, latency, memory, energy and layer times (1x3xLxL)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("--repeat", type=_at_least(1), default=5, help="timed runs per model and backend (median)")
    s.add_argument("--photos", action="append", default=[], metavar="DIR",
                   help="also score every photo in DIR (held-out photos no model trained on, e.g. data/photos-heldout "
                        "from `sft-kernels data`; each file's central 1024x1024 crop); repeat for more folders")
    s.set_defaults(fn=cmd_report)

    from ..train import TrainConfig

    d = TrainConfig()
    s = sub.add_parser("train", help="train (or distill) SFTNet x4 on the bundled photos or folders; resumable",
                       description="Train SFTNet for x4 SR with L1 loss, Adam and a cosine schedule on photos bundled "
                       "with scikit-image, or on folders of photos (--data; eval: scikit-learn's china and flower, "
                       "which no training set should hold). Re-running with the same --out resumes from its last "
                       "checkpoint. Under torchrun it trains data-parallel (gloo on CPU). With --teacher it distills "
                       "(pixel + trunk-feature losses).")
    s.add_argument("--data", action="append", default=list(d.data), metavar="DIR",
                   help="train on every photo under DIR (PNG, JPEG, WebP, BMP, TIFF, any size, searched "
                   "recursively; DIV2K's layout works: its LR folders are skipped); repeat for more folders. "
                   "Patches are cropped and degraded on the fly from a few decoded photos at a time")
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
    s.add_argument("--eval-every", dest="eval_every", type=int, default=d.eval_every,
                   help="steps between evals (0 = at the end only)")
    s.add_argument("--ckpt-every", dest="ckpt_every", type=int, default=d.ckpt_every)
    s.add_argument("--threads", type=int, default=d.threads, help="torch threads per process (0 = default)")
    s.add_argument("--device", default=d.device)
    s.add_argument("--teacher", default=d.teacher, help="teacher weights: distill into this model")
    s.add_argument("--init", default=d.init, help="start from these weights (a shipped model name or a checkpoint "
                   "path) and fine-tune; the run's own checkpoint wins when resuming")
    s.add_argument("--w-out", dest="w_out", type=float, default=d.w_out, help="pixel distillation weight")
    s.add_argument("--w-feat", dest="w_feat", type=float, default=d.w_feat, help="feature distillation weight")
    s.add_argument("--ema", type=float, default=d.ema, help="decay of the weight average that is evaluated and "
                   "exported (0 = off)")
    s.add_argument("--detail", type=float, default=d.detail, help="share of patches drawn where bicubic upscaling "
                   "misses most, the rest uniform (0 = uniform)")
    s.add_argument("--zooms", type=float, nargs="*", default=list(d.zooms), metavar="Z",
                   help="also train on every photo shrunk by these factors in (0, 1), e.g. --zooms 0.75 0.5: "
                   "more texture densities from the same photos")
    s.add_argument("--amp", choices=["none", "bf16"], default=d.amp, help="bf16: forward under bfloat16 autocast "
                   "(~3x faster on CPUs with AMX; weights and optimizer stay fp32)")
    s.add_argument("--qat", action="store_true", help="quantization-aware training: every conv trains through "
                   "int8 fake quantization (activation ranges calibrated on training patches first); at the end "
                   "OUT/int8.safetensors holds the int8 model. Use with --init (and --teacher to distill from the "
                   "float model)")
    s.add_argument("--prune", type=float, default=d.prune, metavar="SPARSITY",
                   help="gradual magnitude pruning (AGP) to this final sparsity in [0, 1), e.g. --prune 0.7 with "
                   "--init teacher --teacher teacher: the convs become SparseConv2d (their masks saved with the "
                   "weights), sparsity rises as s·(1 − (1 − t/T)³) until --prune-until of the steps, then the "
                   "pruned model fine-tunes")
    s.add_argument("--prune-pattern", dest="prune_pattern", default=d.prune_pattern,
                   choices=["unstructured", "block", "n:m"], help="what is pruned: single weights, blocks of 4 output "
                   "channels (faster kernels), or 2 of every 4 input channels (at once)")
    s.add_argument("--prune-until", dest="prune_until", type=float, default=d.prune_until,
                   help="fraction of the steps by which the final sparsity is reached")
    s.add_argument("--prune-every", dest="prune_every", type=int, default=d.prune_every,
                   help="steps between pruning steps")
    s.add_argument("--prune-channels", dest="prune_channels", type=float, default=d.prune_channels,
                   metavar="RATIO", help="structured pruning: remove this fraction of every channel dependency group "
                   "(the residual trunk with everything that reads or writes it, each block's inner channels, the HR "
                   "branch in whole PixelShuffle groups) at the start, rebuilding the convs smaller, then fine-tune "
                   "(e.g. --prune-channels 0.5 --init teacher --teacher teacher)")
    s.add_argument("--factorize", type=float, default=d.factorize, metavar="MAC_RATIO",
                   help="spatial SVD (factorize_) of the trunk's 3x3 convs into 3x1 + 1x3 pairs at this fraction of "
                   "their MACs, initialised from the SVD, then fine-tune (e.g. --factorize 0.5 --init teacher "
                   "--teacher teacher)")
    s.add_argument("--separable", type=int, default=d.separable, metavar="MULTIPLIER",
                   help="the trunk's 3x3 convs become depthwise-separable pairs with this channel multiplier "
                   "(to_separable_, least-squares initialised), then fine-tune (e.g. --separable 2 --init teacher "
                   "--teacher teacher)")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("data", help="collect training photographs from the OS's wallpaper packages",
                       description="Copy the photographs of the operating system's desktop wallpaper packages "
                       "(mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers-20.04 and -16.04: each file "
                       "checked to be a photograph) into a training folder with SOURCES.json (package, author and "
                       "licence of every file); two photos are held out into OUT-heldout for evaluation (sft-kernels "
                       "report --photos OUT-heldout). --install first runs apt-get install (Debian / Ubuntu, as root).")
    s.add_argument("--out", default="data/photos", help="the training folder to fill (default data/photos)")
    s.add_argument("--install", action="store_true", help="apt-get install the packages first (needs root)")
    s.add_argument("--no-bundled", dest="no_bundled", action="store_true",
                   help="leave out the scikit-image photos the default training set uses (added as PNG otherwise)")
    s.set_defaults(fn=cmd_data)

    s = sub.add_parser("tune", help="sweep Triton conv tile configs (cached), or the cpu GEMM's cache blocking",
                       description="--op conv2d: time every candidate tile config of this GPU architecture (or of "
                       "the Triton interpreter on a CPU: slow, use tiny shapes) for one conv2d problem, print configs "
                       "vs time, and cache the winner so later launches of that (bucketed) shape use it; a second "
                       "run reads the cache unless --force. --op gemm: time the cpu backend's GEMM under candidate "
                       "MC,KC,NC cache blockings side by side with torch.matmul and print the setting that applies "
                       "the fastest (SFT_KERNELS_GEMM_BLOCKING); nothing is cached.")
    s.add_argument("--op", choices=["conv2d", "gemm"], default="conv2d")
    s.add_argument("--shape", required=True, help="conv2d: N,C,H,W,K[,R,S[,stride,padding]] (default 3x3, same "
                   "padding); gemm: M,N,K")
    s.add_argument("--threads", type=int, default=0, help="gemm: torch threads (0 = default)")
    s.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16")
    s.add_argument("--configs", help="comma-separated config names to sweep (default: this arch's candidates)")
    s.add_argument("--repeat", type=_at_least(1), default=3)
    s.add_argument("--force", action="store_true", help="re-tune even if the cache has this shape")
    s.set_defaults(fn=cmd_tune)

    s = sub.add_parser("export", help="ship a finished training run as package weights with a model card",
                       description="Write RUN/last.pt's model as <name>.safetensors plus <name>.json (sha256, the "
                       "training command and configuration, data, time, evaluation) into the package's weights "
                       "directory, where `--model <name>` and sft_kernels.train.export.pretrained(name) find it.")
    s.add_argument("run", help="a training run directory (holds last.pt and summary.json)")
    s.add_argument("--name", required=True, help="name to ship it under, e.g. teacher or student")
    s.add_argument("--dir", default=None, help="target directory (default: the package's weights directory)")
    s.add_argument("--notes", default="", help="free text for the model card (e.g. how the run deviated from its "
                   "recorded command)")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("quantize", help="int8 SFTNet from a float one (calibrated, within a PSNR budget)",
                       description="Quantize an SFTNet's convs to int8 (per-channel weights, per-tensor uint8 "
                       "activations; sft_kernels.quantize_): calibrate on HR crops of photos (--calib folders, or "
                       "the bundled training photos) and their bicubic x1/4, then send the most sensitive layers "
                       "back to float until the model is within --budget dB of the float one on those crops. "
                       "Writes OUT.safetensors and OUT.json (model card: which layers stayed float, PSNR on the "
                       "held-out china / flower photos); `upscale --model OUT.safetensors` runs it.")
    s.add_argument("--model", default="teacher", metavar="NAME|PATH", help="float model: shipped name or checkpoint "
                   "(default: teacher)")
    s.add_argument("--calib", nargs="*", metavar="DIR", help="folders of calibration photos (default: the bundled "
                   "training photos; never the evaluation ones)")
    s.add_argument("--crops", type=_at_least(1), default=8, help="calibration crops of 256x256 HR (default: 8)")
    s.add_argument("--budget", type=float, default=0.1, help="PSNR budget in dB on the calibration crops (default: "
                   "0.1; negative: no budget, every eligible conv int8)")
    s.add_argument("--observer", default="mse", choices=["minmax", "percentile", "mse"],
                   help="activation range observer (default: mse)")
    s.add_argument("--fallback", default="float", choices=["float", "w8a16"],
                   help="what sensitive layers become (default: float)")
    s.add_argument("--winograd", action="store_true", help="run the 3x3 convs in the Winograd domain (F(2x2,3x3), "
                   "2.25x fewer int8 multiplies) where that measures faster on this machine; on SFTNet ~1.2x the "
                   "direct int8 model for 0.01-0.04 dB more (the budget sends sensitive convs back to the direct "
                   "int8 conv first)")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="output path (.safetensors added)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("-v", "--verbose", action="store_true", help="print the per-layer report")
    s.set_defaults(fn=cmd_quantize)

    from ..backends import BACKENDS

    s = sub.add_parser("upscale", help="upscale an image file x4 with SFTNet (tiled: any size, bounded memory)",
                       description="Upscale an image x4 with a trained SFTNet. The image is processed in "
                       "overlapping LR tiles, one at a time, so memory stays bounded whatever its size; each "
                       "tile is run with --overlap pixels of context and only its centre is kept, so there are "
                       "no seams. Greyscale input gives greyscale output (16-bit stays 16-bit where the format "
                       "allows), RGBA/LA keep their alpha channel (upscaled bicubically), palette/CMYK/... "
                       "images are converted to RGB. The output format comes from OUT's extension.")
    s.add_argument("input", metavar="IN", help="input image: PNG, JPEG, TIFF, BMP, WebP, ... (anything Pillow reads)")
    s.add_argument("-o", "--output", metavar="OUT", help="output image path (default: IN's name + '_x4.png')")
    s.add_argument("--model", default="teacher", metavar="NAME|PATH",
                   help="shipped weights name (teacher, student, ...) or an SFTNet checkpoint path "
                   "(.safetensors/.pth/.pt, architecture read off its keys) (default: teacher)")
    s.add_argument("--backend", default="auto", choices=["auto", "torch", *BACKENDS],
                   help="conv backend the model is converted to: auto = the fastest here (convert_ with "
                   "backend=None), torch = plain PyTorch, or a named backend (default: auto)")
    s.add_argument("--fp32-precision", dest="fp32_precision", default="ieee", choices=["ieee", "bf16", "bf16_direct"],
                   help="bf16: the converted convs compute in bfloat16 on CPUs with AMX-BF16 (Xeon Sapphire Rapids "
                   "or later; SFTNet ~2.4x faster, PSNR within 0.003 dB) or AVX512-BF16 (AMD Zen 4: ~1.5x, its 3x3 "
                   "convs in bf16 Winograd, PSNR within 0.005 dB); bf16_direct: the same without Winograd (oneDNN's "
                   "and OpenVINO's bf16 numerics); elsewhere a warning and float32 (default: ieee, float32)")
    s.add_argument("--tile", type=int, default=192, metavar="N",
                   help="LR tile size in pixels (output tiles are 4N); 0 = the whole image in one pass, "
                   "memory then grows with the image (default: 192)")
    s.add_argument("--overlap", type=int, default=8, metavar="P",
                   help="LR pixels of context around each tile, cropped from its output (default: 8)")
    s.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1, ... (default: cpu)")
    s.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    s.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar over the tiles")
    s.set_defaults(fn=cmd_upscale)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"sft-kernels {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
