"""SFTNet end to end against what users would pick instead of this package: onnxruntime and OpenVINO, fp32 and
int8, beside eager PyTorch, on the shipped teacher (1×3×lr×lr LR -> ×4, an ordinary NCHW float32 tensor, the same
one for every row; eager also channels_last, its faster layout).

Rows: eager fp32 (NCHW, channels_last), with --compile also torch.compile (inductor, freezing, channels_last);
ours: `convert_` (fp32), on AMX / AVX512-BF16 CPUs `convert_(fp32_precision="bf16")` (convs in bf16) and `convert_` +
`quantize_` (int8, calibrated on LR crops of training photos, PSNR budget
0.1 dB); the teacher exported to ONNX (`sft_kernels.export.export_onnx`) and run in onnxruntime (fp32) and OpenVINO
(fp32 with its inference precision pinned to f32, and its default, which is bf16 on CPUs with AVX-512 BF16 or AMX);
that ONNX model quantized with onnxruntime's static quantization (QDQ, the convs only as in ours, per-channel int8
weights, uint8 activations, min-max calibration on the same crops), run in onnxruntime and in OpenVINO. Each runtime
gets the thread count of the row (intra-op threads / INFERENCE_NUM_THREADS; onnxruntime's without spinning, which
here slowed every other runtime in the process); interleaved medians in this process.
Quality: PSNR (Y, crop 4) on china and flower, never trained or calibrated on.

Run: python benchmarks/models/bench_runtimes.py [--threads 1 2] [--lr 128] [--repeat 5] [--compile] [-o out.json]
         [--plot out.png]
     python benchmarks/models/bench_runtimes.py --replot out.json --plot out.png   (the plot of a saved run)
OpenVINO rows need `pip install openvino` (`make bench-runtimes` installs it); without it they are skipped.
"""
import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import sft_kernels
from sft_kernels.export import export_onnx
from sft_kernels.models import pretrained
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.quantize import eval_pairs

sys.path.insert(0, str(Path(__file__).parent))
from bench_int8_sftnet import calibration_set  # noqa: E402  (the int8 bench's crops: one calibration set)


def ort_int8(float_path: Path, out: Path, crops) -> Path:
    """onnxruntime's static QDQ quantization of the float model, calibrated on `crops`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c.numpy()} for c in crops])

        def get_next(self):
            return next(self.it, None)

    # Convs only, as ours: the SFT layers' x·(scale + 1) + shift stays float (quantizing the constant 1 and the Add
    # around it also makes a graph OpenVINO 2026.4 refuses to compile).
    quantize_static(str(float_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return out


def ort_runner(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    # Its pool's threads spin after each run by default: with several runtimes in one process on few cores they took
    # the cores from whatever ran next (at 2 threads on 2 cores: onnxruntime int8 345 -> 247 ms, OpenVINO int8
    # 290 -> 201, ours 176 -> 147 when a compiled model was in the process too).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])


def openvino_runner(path: Path, threads: int, precision=None):
    import openvino as ov

    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        cfg["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(str(path), "CPU", cfg)
    return lambda x: torch.from_numpy(compiled([x.numpy()])[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile (inductor, freezing, channels_last; minutes of warm-up)")
    p.add_argument("-o", "--output")
    p.add_argument("--plot", help="a PNG: time per runtime and thread count, PSNR on flower beside each bar")
    p.add_argument("--replot", metavar="JSON", help="plot a saved run (-o of an earlier call) and exit")
    args = p.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        plot(saved["rows"], saved["psnr"], args.plot or "runtimes.png", saved.get("lr", args.lr))
        return 0
    try:
        import openvino  # noqa: F401
        have_ov = True
    except ImportError:
        have_ov = False
        print("OpenVINO is not installed (pip install openvino): its rows are skipped")

    teacher = pretrained.pretrained("teacher").eval()
    fp32 = copy.deepcopy(teacher)
    sft_kernels.convert_(fp32)
    bf16 = None
    bf16_row = "sft bf16 (AMX)" if sft_kernels.backends.bf16_unit() == "amx" else "sft bf16 (AVX512-BF16)"
    if sft_kernels.backends.bf16_available():  # the same model with its convs computed in bf16
        bf16 = copy.deepcopy(teacher)
        sft_kernels.convert_(bf16, fp32_precision="bf16")
    int8 = copy.deepcopy(fp32)
    lrs, hrs = calibration_set()
    sft_kernels.quantize_(int8, sft_kernels.Int8Config(psnr_budget_db=0.1, observer="mse"), calibration=lrs,
                          targets=hrs)
    x = torch.rand(1, 3, args.lr, args.lr)
    xcl = x.contiguous(memory_format=torch.channels_last)
    eager = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    tmp = Path(tempfile.mkdtemp(prefix="sft_runtimes_"))
    float_onnx = export_onnx(teacher, x, tmp / "teacher.onnx")
    int8_onnx = ort_int8(float_onnx, tmp / "teacher_ort_int8.onnx", lrs)

    def runtimes(threads):
        r = {"onnxruntime fp32": ort_runner(float_onnx, threads), "onnxruntime int8": ort_runner(int8_onnx, threads)}
        if have_ov:
            r["OpenVINO fp32"] = openvino_runner(float_onnx, threads, "f32")
            r["OpenVINO default (bf16 where the CPU has it)"] = openvino_runner(float_onnx, threads)
            r["OpenVINO int8 (onnxruntime's QDQ model)"] = openvino_runner(int8_onnx, threads)
        return r

    quality = {"eager fp32": eval_pairs(teacher), "sft fp32": eval_pairs(fp32), "sft int8": eval_pairs(int8)}
    if bf16 is not None:
        quality[bf16_row] = eval_pairs(bf16)
    compiled = None
    if args.compile:  # inductor with the weights folded as constants: the strongest PyTorch-only baseline
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(copy.deepcopy(teacher).to(memory_format=torch.channels_last))
        with torch.no_grad():
            compiled(xcl)  # warm-up: the compile itself
    for name, run in runtimes(torch.get_num_threads()).items():
        quality[name] = eval_pairs(run)
    print("PSNR (dB) china / flower:")
    for name, q in quality.items():
        print(f"  {name:46s} {q['china']:.3f} / {q['flower']:.3f}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        fns = {"eager fp32 NCHW": lambda: teacher(x), "eager fp32 channels_last": lambda: eager(xcl),
               "sft fp32": lambda: fp32(x), "sft int8": lambda: int8(x)}
        if bf16 is not None:
            fns[bf16_row] = lambda: bf16(x)
        if compiled is not None:
            fns["torch.compile fp32 channels_last"] = lambda: compiled(xcl)
        for name, run in runtimes(threads).items():
            fns[name] = (lambda r: lambda: r(x))(run)
        with torch.no_grad():
            t = time_interleaved(fns, repeat=args.repeat)
        ms = {k: v * 1e3 for k, v in t.items()}
        rows.append(dict(threads=threads, ms=ms))
        best_other = min(v for k, v in ms.items() if not k.startswith("sft"))
        print(f"{threads} thread(s), median ms (x: ours against the fastest other):")
        for k, v in ms.items():
            note = f"  {best_other / v:.2f}x" if k.startswith("sft") else ""
            print(f"  {k:46s} {v:9.1f}{note}", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(lr=args.lr, rows=rows, psnr=quality,
                           versions=_versions()), f, indent=1)
    if args.plot:
        plot(rows, quality, args.plot, args.lr)
    return 0


def _quality_key(name: str) -> str:
    """The PSNR entry of a timed row (eager's two layouts share one)."""
    return "eager fp32" if name.startswith(("eager fp32", "torch.compile")) else name


def _short(name: str) -> str:
    """A row's name for the plot's axis."""
    tail = " (QDQ)" if "QDQ" in name else " (bf16 here)" if "bf16 where" in name else ""
    return name.split(" (")[0] + tail


def plot(rows: list, psnr: dict, path: str, lr: int) -> None:
    """Horizontal bars, one panel per thread count: median ms per implementation (ours highlighted), the PSNR on
    flower written beside each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(7 * len(rows), 4.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        names = sorted(row["ms"], key=row["ms"].get, reverse=True)
        ms = [row["ms"][n] for n in names]
        colors = ["tab:red" if n.startswith("sft") else "tab:gray" for n in names]
        ax.barh([_short(n) for n in names], ms, color=colors)
        for i, n in enumerate(names):
            q = psnr.get(_quality_key(n))
            if q:
                ax.text(ms[i], i, f"  {ms[i]:.0f} ms, {q['flower']:.2f} dB", va="center", fontsize=8)
        ax.set_xlim(0, max(ms) * 1.5)
        ax.set_xlabel("median ms per forward (lower is better); PSNR on flower")
        ax.set_title(f"{row['threads']} thread{'s' if row['threads'] > 1 else ''}")
    fig.suptitle(f"SFTNet ×4 on a 1×3×{lr}×{lr} NCHW input: ours (red) and other runtimes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def _versions() -> dict:
    import onnxruntime

    v = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    try:
        import openvino

        v["openvino"] = openvino.__version__
    except ImportError:
        pass
    return v


if __name__ == "__main__":
    sys.exit(main())
