"""GPU benchmark: sft conv2d backends (Triton, CUDA when built) vs cuDNN, fp16, channels_last; SFTNet end to end;
the int8 convs (qconv2d on the CUDA kernel and Triton, uint8 in and out) vs cuDNN fp16 on SFTNet's shapes; the
block-sparse conv (Triton sparse_conv2d) per sparsity vs cuDNN fp16 dense; the fused separable conv (Triton, CUDA)
vs cuDNN's two convs.

Per conv shape (SFTNet's and ResNet-50's catalogs, each batch size), cuDNN (cudnn.benchmark=True) and every GPU
backend of ours are timed with triton.testing.do_bench (it flushes L2 between runs) in interleaved rounds; the
median of the rounds' medians is kept. End to end: SFTNet fp16, eager cuDNN and cuDNN replayed from a CUDA graph
against each converted model, eager and replayed from a CUDA graph. TFLOP/s count direct-conv FLOPs; "% peak" is
against a measured fp16 cuBLAS 8192³ GEMM.

Every row is printed and appended to the JSON-lines file --out as soon as it is measured, so a run cut short keeps
what it measured; `benchmarks/gpu_table.py FILE` prints the summary table (this script does too, last).
Usage: python benchmarks/gpu_bench.py --out results.jsonl [--batch 1 16] [--catalog sftnet resnet50]
Rehearsal without a GPU (tiny shapes, host timer, Triton interpreted; exercises every code path and error row):
       python benchmarks/gpu_bench.py --rehearse --out /tmp/rehearsal.jsonl
"""
import argparse
import functools
import json
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F


class Recorder:
    """Prints each row and appends it to a JSON-lines file at once (a timeout keeps what was measured)."""

    def __init__(self, path):
        self.path, self.rows = path, []

    def __call__(self, **row):
        self.rows.append(row)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if row.get("kind") == "conv" or row.get("kind") == "e2e":
            ms = row.get("ms")
            ratio = row.get("vs_cudnn")
            kernel = (f"  kernel {row['kernel_ms']:8.4f} ms cuDNN {row['cudnn_kernel_ms']:8.4f} ms "
                      f"{row['kernel_vs_cudnn']:5.2f}x" if "kernel_ms" in row else "")
            print(f"  {row['kind']:4s} b={row['batch']:<3d} {row['shape']:30s} {row['backend']:13s} "
                  + (f"{ms:8.3f} ms  cuDNN {row['cudnn_ms']:8.3f} ms  {ratio:5.2f}x{kernel}" if ms is not None
                     else f"FAILED {row.get('error', '')[:150]}"), flush=True)
        else:
            print(" ", json.dumps(row)[:400], flush=True)


DEVICE = "cuda"
DTYPE = torch.half


def _host_ms(fn, **_):
    fn()
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def graph_fns(fns: dict, reps: int = 10) -> dict:
    """Each fn called `reps` times inside one CUDA graph: replaying it times the kernels without Python/launch cost
    (per call: replay time / reps). {name: (replay fn, reps)}; a fn that cannot be captured is left out."""
    out = {}
    for name, fn in fns.items():
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(reps):
                    fn()
            out[name] = g.replay
        except Exception as e:  # noqa: BLE001
            print(f"  (no graph timing for {name}: {type(e).__name__}: {str(e)[:100]})")
    return out


def bench_rounds(fns: dict, rounds: int, warmup: int, rep: int) -> dict:
    """{name: median ms}: each round runs every fn's do_bench once, in turn (interleaved)."""
    if DEVICE == "cuda":
        import triton.testing

        timer = triton.testing.do_bench
    else:
        timer = _host_ms
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(timer(fn, warmup=warmup, rep=rep, return_mode="median"))
    return {name: statistics.median(v) for name, v in samples.items()}


def conv_rows(rec, catalogs, batches, names, args):
    from sft_kernels.tools.shapes import resnet50_conv_shapes, sftnet_conv_shapes

    shapes_of = {"sftnet": lambda n: sftnet_conv_shapes(lr=args.lr, n=n),
                 "resnet50": lambda n: resnet50_conv_shapes(size=args.size, n=n)}
    for catalog in catalogs:
        for n in batches:
            for s in shapes_of[catalog](n):
                try:
                    conv_shape(rec, catalog, n, s, names, args)
                except Exception as e:  # noqa: BLE001 - one shape (e.g. out of memory) must not end the table
                    rec(kind="error", section="conv", shape=s.name, batch=n, error=f"{type(e).__name__}: {e}")


def conv_shape(rec, catalog, n, s, names, args):
    from sft_kernels import ops

    x = torch.randn(s.n, s.c, s.h, s.w, device=DEVICE, dtype=DTYPE).contiguous(memory_format=torch.channels_last)
    w = torch.randn(s.k, s.c // s.groups, s.r, s.s, device=DEVICE, dtype=DTYPE)
    b = torch.randn(s.k, device=DEVICE, dtype=DTYPE)
    a = (s.stride, s.padding, 1, s.groups)
    fns = {"cudnn": lambda: F.conv2d(x, w, b, *a)}
    failed = {}
    for name in names:
        fn = lambda name=name: ops.conv2d(x, w, b, *a, backend=name)  # noqa: E731
        try:
            _sync()
            fn()  # compile / pack outside the timing
            _sync()
            fns[name] = fn
        except Exception as e:  # noqa: BLE001 - record and go on with the other backends
            failed[name] = f"{type(e).__name__}: {e}"
    t = bench_rounds(fns, args.rounds, args.warmup, args.rep)
    kt = {}  # kernel time: the same calls replayed from a CUDA graph (no Python, no launch gaps)
    if DEVICE == "cuda" and args.graph_reps:
        graphs = graph_fns(fns, args.graph_reps)
        if "cudnn" in graphs:
            kt = {k: v / args.graph_reps for k, v in bench_rounds(graphs, args.rounds, args.warmup, args.rep).items()}
    for name in names:
        common = dict(kind="conv", catalog=catalog, batch=n, shape=s.name, backend=name, cudnn_ms=t["cudnn"],
                      flops=s.flops, cudnn_tflops=s.flops / t["cudnn"] / 1e9)
        if name in failed:
            rec(**common, ms=None, error=failed[name])
            continue
        extra = {}
        if name in kt:
            extra = dict(kernel_ms=kt[name], cudnn_kernel_ms=kt["cudnn"], kernel_vs_cudnn=kt["cudnn"] / kt[name],
                         kernel_tflops=s.flops / kt[name] / 1e9)
        rec(**common, ms=t[name], tflops=s.flops / t[name] / 1e9, vs_cudnn=t["cudnn"] / t[name], **extra)


def int8_rows(rec, batches, args):
    """The int8 convs (the CUDA tensor-core kernel and Triton) against cuDNN fp16 on SFTNet's conv shapes: uint8 in,
    uint8 out (requantized in the store), per-channel int8 weights; the issue's bar is 1.5× cuDNN fp16."""
    from sft_kernels import backends, ops
    from sft_kernels.tools.shapes import sftnet_conv_shapes

    names = [b for b in ("cuda", "triton") if backends.supports(b, "qconv2d", DEVICE, torch.uint8)]
    if not names:
        rec(kind="error", section="int8", error="neither the cuda nor the Triton backend can run qconv2d here")
        return
    for n in batches:
        for s in sftnet_conv_shapes(lr=args.lr, n=n):
            try:
                x = torch.randn(s.n, s.c, s.h, s.w, device=DEVICE, dtype=DTYPE).contiguous(
                    memory_format=torch.channels_last)
                w = torch.randn(s.k, s.c, s.r, s.s, device=DEVICE, dtype=DTYPE)
                b = torch.randn(s.k, device=DEVICE, dtype=DTYPE)
                xq = torch.randint(0, 256, x.shape, device=DEVICE, dtype=torch.uint8).contiguous(
                    memory_format=torch.channels_last)
                wq = torch.randint(-127, 128, w.shape, device=DEVICE, dtype=torch.int8)
                ws, bq = torch.rand(s.k, device=DEVICE) * 0.01 + 1e-3, torch.randn(s.k, device=DEVICE)
                a = (s.stride, s.padding)
                fns = {"cudnn fp16": lambda: F.conv2d(x, w, b, *a)}
                for name in names:
                    fns[name] = functools.partial(ops.qconv2d, xq, wq, ws, bq, *a, input_scale=0.02,
                                                  input_zero_point=3, out_scale=0.05, out_zero_point=128,
                                                  backend=name)
                for f in fns.values():
                    f()
                _sync()
                t = bench_rounds(fns, args.rounds, args.warmup, args.rep)
                kt = {}
                if DEVICE == "cuda" and args.graph_reps:
                    graphs = graph_fns(fns, args.graph_reps)
                    if len(graphs) == len(fns):
                        kt = {k: v / args.graph_reps
                              for k, v in bench_rounds(graphs, args.rounds, args.warmup, args.rep).items()}
                for name in names:
                    rec(kind="int8", backend=name, batch=n, shape=s.name, flops=s.flops, cudnn_ms=t["cudnn fp16"],
                        ms=t[name], vs_cudnn=t["cudnn fp16"] / t[name], tops=s.flops / t[name] / 1e9,
                        kernel_vs_cudnn=kt["cudnn fp16"] / kt[name] if kt else None)
            except Exception as e:  # noqa: BLE001 - one shape must not end the table
                rec(kind="error", section="int8", shape=s.name, batch=n, error=f"{type(e).__name__}: {e}")


def sparse_rows(rec, batches, args):
    """The sparse convs (Triton block-sparse; CUDA: tensor cores with block lists, and 2:4 weights on the sparse
    tensor cores), weights pruned in blocks that match the Triton tile, unstructured and 2:4, against cuDNN fp16 and
    our dense CUDA conv on SFTNet's trunk and 128→128 3×3 shapes, per sparsity; the pruning issue asks block-sparse
    and 2:4 against dense on the same GPU."""
    from sft_kernels import backends, ops
    from sft_kernels.runtime import triton as runtime_triton
    from sft_kernels.tools.shapes import ConvShape, sftnet_conv_shapes
    from sft_kernels.transforms.prune import masks

    sparse_backends = [be for be in ("triton", "cuda") if backends.supports(be, "sparse_conv2d", DEVICE, DTYPE)]
    if not sparse_backends:
        rec(kind="error", section="sparse", error="no GPU backend can run sparse_conv2d here")
        return
    cfg = runtime_triton.load("sft_kernels.ops.sparse_conv2d.triton").config()
    base = [sh for sh in sftnet_conv_shapes(lr=args.lr) if sh.name.startswith("trunk")]
    base.append(ConvShape("128→128 3×3 @64", 1, 128, args.lr // 2, args.lr // 2, 128, 3, 3, padding=1))
    for n in batches:
        for s0 in base:
            s = ConvShape(s0.name, n, s0.c, s0.h, s0.w, s0.k, s0.r, s0.s, s0.stride, s0.padding)
            x = torch.randn(s.n, s.c, s.h, s.w, device=DEVICE, dtype=DTYPE).contiguous(
                memory_format=torch.channels_last)
            w = torch.randn(s.k, s.c, s.r, s.s, device=DEVICE, dtype=DTYPE)
            b = torch.randn(s.k, device=DEVICE, dtype=DTYPE)
            a = (s.stride, s.padding)
            for pattern, sp in [(pt, v) for pt in ("block", "unstructured") for v in (0.5, 0.7, 0.9)] + [("2:4", 0.5)]:
                try:
                    if pattern == "2:4":  # the cuda backend runs these on the sparse tensor cores (mma.sp)
                        m = masks.n_m(w.float(), 2, 4)
                    elif pattern == "block":  # whole (BLOCK_N out × BLOCK_K in) blocks at one tap
                        bn, bk = cfg["BLOCK_N"], cfg["BLOCK_K"]
                        nk, ncb = -(-s.k // bn), -(-s.c // bk)
                        keep = torch.rand(nk, 1, ncb, 1, s.r, s.s, device=DEVICE) >= sp
                        m = keep.expand(nk, bn, ncb, bk, s.r, s.s).reshape(nk * bn, ncb * bk, s.r, s.s)
                        m = m[:s.k, :s.c]
                    else:
                        m = masks.unstructured(w.float(), sp)
                    ws = w * m
                    fns = {"cudnn fp16": lambda: F.conv2d(x, w, b, *a)}
                    if "cuda" in sparse_backends:  # our dense tensor-core conv: what the sparse kernels save
                        fns["cuda dense"] = lambda: ops.conv2d(x, w, b, *a, backend="cuda")
                    for be in sparse_backends:
                        fns[be] = lambda ws=ws, be=be: ops.sparse_conv2d(x, ws, b, *a, backend=be)
                    for f in fns.values():
                        f()
                    _sync()
                    t = bench_rounds(fns, args.rounds, args.warmup, args.rep)
                    for be in sparse_backends:
                        rec(kind="sparse", batch=n, shape=s.name, pattern=pattern, sparsity=sp, backend=be,
                            cudnn_ms=t["cudnn fp16"], ms=t[be], vs_cudnn=t["cudnn fp16"] / t[be],
                            vs_cuda_dense=t["cuda dense"] / t[be] if "cuda dense" in t else None)
                except Exception as e:  # noqa: BLE001 - one case must not end the table
                    rec(kind="error", section="sparse", shape=s.name, batch=n, pattern=pattern, sparsity=sp,
                        error=f"{type(e).__name__}: {e}")


def separable_rows(rec, batches, args):
    """The fused depthwise -> pointwise conv (Triton separable_conv2d, no depthwise map in memory) against cuDNN's
    two convs (depthwise, ReLU, 1×1), on SFTNet-like widths and MobileNetV2's pairs; the separable issue asks the
    fused op on the GPU measured against what users run instead."""
    from sft_kernels import backends, ops
    from sft_kernels.tools.shapes import SeparableShape, separable_shapes

    ours = [be for be in ("triton", "cuda") if backends.supports(be, "separable_conv2d", DEVICE, DTYPE)]
    if not ours:
        rec(kind="error", section="separable", error="no GPU backend can run separable_conv2d here")
        return
    for n in batches:
        for cat in ("sftnet", "mobilenetv2"):
            shapes = separable_shapes(cat, n)
            if args.rehearse:  # the interpreter: one tiny pair per catalog, stride 2 for MobileNetV2's
                shapes = [SeparableShape("rehearsal 8->16 @8", n, 8, 8, 8, 16, 3, 1 if cat == "sftnet" else 2)]
            for s in shapes:
                try:
                    x = torch.randn(s.n, s.c, s.h, s.w, device=DEVICE, dtype=DTYPE).contiguous(
                        memory_format=torch.channels_last)
                    dw, pw = (torch.randn(s.c, 1, s.r, s.r, device=DEVICE, dtype=DTYPE),
                              torch.randn(s.k, s.c, 1, 1, device=DEVICE, dtype=DTYPE))
                    dwb = torch.randn(s.c, device=DEVICE, dtype=DTYPE)
                    pwb = torch.randn(s.k, device=DEVICE, dtype=DTYPE)
                    st, pad = s.stride, s.r // 2
                    fns = {"cudnn fp16": lambda: F.conv2d(F.relu(F.conv2d(x, dw, dwb, st, pad, groups=s.c)), pw, pwb)}
                    for be in ours:
                        fns[be] = lambda be=be: ops.separable_conv2d(x, dw, pw, dwb, pwb, st, pad,
                                                                     mid_activation="relu", backend=be)
                    for f in fns.values():
                        f()
                    _sync()
                    t = bench_rounds(fns, args.rounds, args.warmup, args.rep)
                    for be in ours:
                        rec(kind="separable", batch=n, catalog=cat, shape=s.name, backend=be, flops=s.flops,
                            cudnn_ms=t["cudnn fp16"], ms=t[be], vs_cudnn=t["cudnn fp16"] / t[be],
                            tflops=s.flops / t[be] / 1e9)
                except Exception as e:  # noqa: BLE001 - one shape must not end the table
                    rec(kind="error", section="separable", shape=s.name, batch=n, error=f"{type(e).__name__}: {e}")


def e2e_rows(rec, batches, names, args):
    from sft_kernels import convert_
    from sft_kernels.metrics import conv_macs
    from sft_kernels.models import SFTNet, compile_for_inference

    with torch.no_grad():  # SFTNet conv FLOPs per image (counted by hooks, on the CPU)
        flops = 2 * conv_macs(SFTNet("pytorch").eval(), torch.zeros(1, 3, args.e2e_lr, args.e2e_lr))
    shape = f"SFTNet {args.e2e_lr}->x4 fp16"
    for n in batches:
        model = SFTNet("pytorch").reset_parameters_(seed=0).to(DEVICE, DTYPE).eval()
        x = torch.rand(n, 3, args.e2e_lr, args.e2e_lr, device=DEVICE, dtype=DTYPE).contiguous(
            memory_format=torch.channels_last)
        runs, failed = {}, {}
        with torch.no_grad():
            runs["cudnn"] = lambda: model(x)
            try:
                g_ref = compile_for_inference(model, x)
                runs["cudnn+graph"] = lambda: g_ref(x)
            except Exception as e:  # noqa: BLE001
                failed["cudnn+graph"] = f"{type(e).__name__}: {e}"
            for name in names:
                m = SFTNet("pytorch").reset_parameters_(seed=0).to(DEVICE, DTYPE).eval()
                try:
                    convert_(m, backend=name)
                    m(x)
                    runs[name] = lambda m=m: m(x)
                except Exception as e:  # noqa: BLE001
                    failed[name] = f"{type(e).__name__}: {e}"
                    continue
                try:
                    g = compile_for_inference(m, x)
                    err = (g(x).float() - model(x).float()).abs().max().item()
                    rec(kind="check", what=f"{name}+graph vs eager cuDNN, batch {n}", max_abs_err=err)
                    runs[f"{name}+graph"] = lambda g=g: g(x)
                except Exception as e:  # noqa: BLE001
                    failed[f"{name}+graph"] = f"{type(e).__name__}: {e}"
            t = bench_rounds(runs, args.rounds, args.warmup, args.rep)
        for name in [*runs, *failed]:
            common = dict(kind="e2e", catalog="sftnet", batch=n, shape=shape, backend=name, cudnn_ms=t["cudnn"],
                          flops=flops * n, cudnn_tflops=flops * n / t["cudnn"] / 1e9)
            if name in failed:
                rec(**common, ms=None, error=failed[name])
            elif name != "cudnn":
                rec(**common, ms=t[name], tflops=flops * n / t[name] / 1e9, vs_cudnn=t["cudnn"] / t[name])
        runs.clear()
        if DEVICE == "cuda":
            torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--catalog", nargs="+", default=["sftnet", "resnet50"], choices=["sftnet", "resnet50"])
    p.add_argument("--lr", type=int, default=128, help="SFTNet LR size of the per-conv table (default 128)")
    p.add_argument("--size", type=int, default=224, help="ResNet-50 input size (default 224)")
    p.add_argument("--e2e-lr", dest="e2e_lr", type=int, default=128, help="LR size of the end-to-end SFTNet runs")
    p.add_argument("--no-e2e", dest="e2e", action="store_false", help="skip the end-to-end SFTNet runs")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 (qconv2d: cuda and Triton) rows")
    p.add_argument("--no-sparse", dest="sparse", action="store_false",
                   help="skip the sparse (Triton block-sparse sparse_conv2d) rows")
    p.add_argument("--no-separable", dest="separable", action="store_false",
                   help="skip the fused separable (Triton separable_conv2d) rows")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per shape (median kept)")
    p.add_argument("--warmup", type=int, default=10, help="do_bench warm-up, ms")
    p.add_argument("--rep", type=int, default=40, help="do_bench measuring time, ms")
    p.add_argument("--graph-reps", dest="graph_reps", type=int, default=10,
                   help="per conv, also time N calls replayed from a CUDA graph (kernel time); 0 skips")
    p.add_argument("--out", default=None, help="JSON-lines file the rows are appended to")
    p.add_argument("--rehearse", action="store_true",
                   help="no GPU: run every path on the CPU in fp32 with tiny shapes (timings meaningless)")
    args = p.parse_args(argv)
    global DEVICE, DTYPE
    if args.rehearse:
        DEVICE, DTYPE = "cpu", torch.float32
        args.batch, args.lr, args.size, args.e2e_lr, args.rounds = [1], 8, 32, 8, 1
    elif not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU visible to torch: nothing to benchmark (--rehearse runs the paths on a CPU)")
        return 0
    import triton

    from sft_kernels import backends

    rec = Recorder(args.out)
    torch.backends.cudnn.benchmark = True
    names = [b for b in ("triton", "cuda") if backends.supports(b, "conv2d", DEVICE, DTYPE)]
    g = 256 if args.rehearse else 8192
    a = torch.randn(g, g, device=DEVICE, dtype=DTYPE)
    t_mm = bench_rounds({"mm": lambda: a @ a}, 1, 25, 100)["mm"]
    rec(kind="meta", gpu=torch.cuda.get_device_name() if DEVICE == "cuda" else "none (rehearsal)",
        torch=torch.__version__, cuda=torch.version.cuda, triton=triton.__version__,
        cudnn=torch.backends.cudnn.version(), backends=names, tf32_cudnn=torch.backends.cudnn.allow_tf32,
        fp16_gemm_peak_tflops=2 * g**3 / t_mm / 1e9, when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        args=vars(args))
    if not names:
        print("gpu_bench: neither the Triton nor the CUDA backend can run here:", backends.status())
    # The kernels never measured on a GPU before the dense conv catalog (measured in earlier runs): a run cut by
    # its time limit keeps the rows that are new.
    for section, fn in (("e2e", lambda: e2e_rows(rec, args.batch, names, args) if args.e2e else None),
                        ("int8", lambda: int8_rows(rec, args.batch, args) if args.int8 else None),
                        ("sparse", lambda: sparse_rows(rec, args.batch, args) if args.sparse else None),
                        ("separable", lambda: separable_rows(rec, args.batch, args) if args.separable else None),
                        ("conv", lambda: conv_rows(rec, args.catalog, args.batch, names, args))):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the other
            traceback.print_exc()
            rec(kind="error", section=section, error=f"{type(e).__name__}: {e}")
    from gpu_table import print_table

    print_table(rec.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
