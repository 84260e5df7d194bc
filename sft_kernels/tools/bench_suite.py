"""The benchmark catalog behind `sft-kernels bench`: every op and backend side by side with PyTorch.

For each shape the candidates run interleaved in one process on the same inputs (medians of many runs).
Reported: median ms, GFLOP/s (direct-conv FLOPs), % of this machine's measured fp32 FMA peak, and the
speed ratio to the best PyTorch baseline (F.conv2d with NCHW or channels_last input; torch.matmul).
"""
from __future__ import annotations

import json
import warnings
from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn.functional as F

from .. import backends, ops
from ..nn.quantized import QuantConv2d, quantize_weight
from ..ops.qconv2d import reference as qref
from ..ops.qconv2d.reference import quantize
from .benchmark import format_table, measure_peak_gflops, time_interleaved
from .shapes import CONV_CATALOGS, GEMM_CONV, GEMM_SQUARE, quick_conv_shapes


# Rounds continue until this much time has passed (and `repeat` rounds ran): ten rounds of a sub-millisecond op
# gave medians that moved by 2x between runs on this noisy host.
MIN_SECONDS = 1.0


def winograd_eligible(shape) -> bool:
    """Whether the cpu backend's automatic choice runs this conv as Winograd (asked of the extension, whose
    csrc/cpu/conv2d/select.cpp holds the rule); False without the extension."""
    if backends.cpu_ext() is None:
        return False
    p, q = shape.pq
    return torch.ops.sft_cpu.conv2d_winograd_tile(0, shape.n, shape.c, shape.k, shape.r, shape.s, p, q,
                                                  [shape.stride] * 2, [shape.dilation] * 2, shape.groups) > 0


def conv_candidates(shape, dtype=torch.float32, device="cpu", include_triton=False):
    """{name: fn} for one conv shape: PyTorch baselines first, then every sft backend that runs here."""
    x = torch.randn(shape.n, shape.c, shape.h, shape.w, dtype=dtype, device=device)
    w = torch.randn(shape.k, shape.c // shape.groups, shape.r, shape.s, dtype=dtype, device=device)
    b = torch.randn(shape.k, dtype=dtype, device=device)
    xcl = x.contiguous(memory_format=torch.channels_last)
    args = (shape.stride, shape.padding, shape.dilation, shape.groups)
    fns = {
        "torch nchw": lambda: F.conv2d(x, w, b, *args),
        "torch cl": lambda: F.conv2d(xcl, w, b, *args),
    }
    for name in ("cpu", "cuda", "triton"):
        if name == "triton" and not include_triton:
            continue
        if backends.supports(name, "conv2d", torch.device(device).type, dtype):
            fns[f"sft {name} nchw"] = lambda name=name: ops.conv2d(x, w, b, *args, backend=name)
            fns[f"sft {name} cl"] = lambda name=name: ops.conv2d(xcl, w, b, *args, backend=name)
            if name == "cpu" and winograd_eligible(shape):  # auto picks Winograd here: show direct too
                fns["sft cpu cl direct"] = lambda: ops.conv2d(xcl, w, b, *args, backend="cpu", algorithm="direct")
    return fns


def _shapes(progress: bool, items: list, desc: str):
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="shape")


def run_conv(quick: bool = False, repeat: int = 10, progress: bool = True, peak: Optional[float] = None,
             catalog: str = "sftnet") -> list:
    shapes = quick_conv_shapes(catalog) if quick else CONV_CATALOGS[catalog]()
    peak = peak or measure_peak_gflops()[0]
    rows = []
    for s in _shapes(progress, shapes, "conv2d shapes"):
        times = time_interleaved(conv_candidates(s), repeat=repeat, min_time=0.0 if quick else MIN_SECONDS)
        best_torch = min(v for k, v in times.items() if k.startswith("torch"))
        for name, t in times.items():
            gf = s.flops / t / 1e9
            rows.append(dict(op="conv2d", shape=s.name, impl=name, ms=t * 1e3, gflops=gf, pct_peak=100 * gf / peak,
                             vs_torch=best_torch / t, threads=torch.get_num_threads()))
    return rows


def run_matmul(quick: bool = False, repeat: int = 10, progress: bool = True, peak: Optional[float] = None) -> list:
    sizes = [(n, n, n) for n in (GEMM_SQUARE[:2] if quick else GEMM_SQUARE)]
    sizes += [(m // 16, n, k) for (m, n, k) in GEMM_CONV] if quick else GEMM_CONV
    peak = peak or measure_peak_gflops()[0]
    rows = []
    for m, n, k in _shapes(progress, sizes, "matmul shapes"):
        a, b = torch.randn(m, k), torch.randn(k, n)
        fns = {"torch": lambda: torch.matmul(a, b)}
        if backends.supports("cpu", "matmul", "cpu", torch.float32):
            fns["sft cpu"] = lambda: ops.matmul(a, b, backend="cpu")
        times = time_interleaved(fns, repeat=repeat, min_time=0.0 if quick else MIN_SECONDS)
        for name, t in times.items():
            gf = 2 * m * n * k / t / 1e9
            rows.append(dict(op="matmul", shape=f"{m}x{n}x{k}", impl=name, ms=t * 1e3, gflops=gf,
                             pct_peak=100 * gf / peak, vs_torch=times["torch"] / t, threads=torch.get_num_threads()))
    return rows


def qconv_case(s) -> SimpleNamespace:
    """One int8 conv shape's seeded benchmark data: float input x (channels_last) and its uint8 form xu8 with
    (xs, xz), float weight w, its int8 form (wq, ws) and dequantized wd, bias b, output parameters (os_, oz)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(s.n, s.c, s.h, s.w, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(s.k, s.c // s.groups, s.r, s.s, generator=g) * 0.05
    b = torch.randn(s.k, generator=g) * 0.1
    xs, xz, os_, oz = 1 / 255, 0, 0.05, 128
    wq, ws = quantize_weight(w)
    return SimpleNamespace(x=x, w=w, b=b, xs=xs, xz=xz, os_=os_, oz=oz, wq=wq, ws=ws,
                           wd=wq.float() * ws.view(-1, 1, 1, 1), xu8=quantize(x, xs, xz))  # channels_last kept


def qconv_candidates(s) -> dict:
    """{name: fn} for one int8 conv shape: PyTorch's quantized x86 engine (torch.ao.nn.quantized.Conv2d: uint8
    activations, per-channel int8 weights, uint8 output, channels_last), our int8 conv on the same scheme and
    inputs (outputs checked within one quantization step first) called two ways: the op with plain tensors ("sft
    int8": argument checks and the weight cache's lookup on every call) and the module a quantized model holds
    ("sft int8 module": sft_kernels.nn.QuantConv2d, whose call is bound after the first, as torch.ao's module is
    against its op), and our fp32 direct and best convs."""
    d = qconv_case(s)
    x, b, xs, xz, os_, oz, wq, ws, wd, xu8 = d.x, d.b, d.xs, d.xz, d.os_, d.oz, d.wq, d.ws, d.wd, d.xu8
    a = (s.stride, s.padding, s.dilation, s.groups)
    mod = QuantConv2d(s.c, s.k, (s.r, s.s), s.stride, s.padding, s.dilation, s.groups, input_scale=xs,
                      input_zero_point=xz, backend="cpu").eval()
    mod.weight_int8.copy_(wq)
    mod.weight_scale.copy_(ws)
    mod.bias.copy_(b)
    mod.out_scale, mod.out_zero_point = os_, oz
    fns = {"sft int8": lambda: ops.qconv2d(xu8, wq, ws, b, *a, input_scale=xs, input_zero_point=xz, out_scale=os_,
                                           out_zero_point=oz, backend="cpu"),
           "sft int8 module": lambda: mod(xu8),
           "sft fp32 direct": lambda: ops.conv2d(x, wd, b, *a, backend="cpu", algorithm="direct"),
           "sft fp32 best": lambda: ops.conv2d(x, wd, b, *a, backend="cpu")}
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():  # quantized tensor creation is deprecated in recent torch; still the engine
            warnings.simplefilter("ignore")
            xq_t = torch.quantize_per_tensor(x, xs, xz, torch.quint8)
            qw = torch._make_per_channel_quantized_tensor(wq, ws.double(), torch.zeros(s.k, dtype=torch.long), 0)
        qconv = torch.ao.nn.quantized.Conv2d(s.c, s.k, (s.r, s.s), s.stride, s.padding, s.dilation, s.groups)
        qconv.set_weight_bias(qw, b)
        qconv.scale, qconv.zero_point = os_, oz
        if not torch.equal(fns["sft int8 module"](), fns["sft int8"]()):
            raise RuntimeError(f"{s.name}: the QuantConv2d module and the op disagree")
        diff = (fns["sft int8"]().int() - qconv(xq_t).int_repr().int()).abs().max().item()
        if diff > 1:  # which one is off: both against the exact result
            exact = qref.qconv2d(xu8, xs, xz, wq, ws, b, None, *a, None, 0.01, os_, oz)
            ours = (fns["sft int8"]().int() - exact.int()).abs().max().item()
            if ours > 1:
                raise RuntimeError(f"{s.name}: sft int8 is {ours} quantization steps from the exact result")
            theirs = (qconv(xq_t).int_repr().int() - exact.int()).abs().max().item()
            warnings.warn(f"{s.name}: torch.ao's int8 output is {theirs} quantization steps from the exact result "
                          f"(ours: {ours})")
        fns = {"torch.ao int8": lambda: qconv(xq_t), **fns}
    return fns


def time_qconv(fns: dict, **kw) -> dict:
    """Median seconds of qconv_candidates-style {name: fn}: the int8 convs interleaved among themselves, then the fp32
    ones among themselves. Interleaved with the fp32 convs (multi-MB buffers freed and faulted in again), the small
    int8 convs of both engines ran up to 2× slower, torch.ao's more: ResNet-50's summed 1.07-1.12× torch.ao that way
    and 0.94-0.96× alone (Zen 4, 2026-12-06)."""
    int8 = {k: f for k, f in fns.items() if "fp32" not in k}
    fp32 = {k: f for k, f in fns.items() if "fp32" in k}
    return {**time_interleaved(int8, **kw), **(time_interleaved(fp32, **kw) if fp32 else {})}


def run_qconv(quick: bool = False, repeat: int = 10, progress: bool = True, peak: Optional[float] = None,
              catalog: str = "sftnet") -> list:
    """int8 conv rows: GOP/s, % of 4× the fp32 peak (AVX-512 VNNI's int8 rate; AMX can exceed it), and the ratio
    to torch.ao's int8 conv where this PyTorch has its x86 engine (else to our best fp32 conv)."""
    shapes = quick_conv_shapes(catalog) if quick else CONV_CATALOGS[catalog]()
    peak = peak or measure_peak_gflops()[0]
    rows = []
    for s in _shapes(progress, shapes, "qconv2d shapes"):
        if s.groups != 1:
            continue
        with torch.no_grad():
            times = time_qconv(qconv_candidates(s), repeat=repeat, min_time=0.0 if quick else MIN_SECONDS)
        base = times.get("torch.ao int8", times["sft fp32 best"])
        for name, t in times.items():
            gops = s.flops / t / 1e9
            rows.append(dict(op="qconv2d", shape=s.name, impl=name, ms=t * 1e3, gflops=gops,
                             pct_peak=100 * gops / (4 * peak), vs_torch=base / t, threads=torch.get_num_threads()))
    return rows


def table(rows: list) -> str:
    body = [[r["op"], r["shape"], r["impl"], f"{r['ms']:.3f}", f"{r['gflops']:.1f}", f"{r['pct_peak']:.0f}%",
             f"{r['vs_torch']:.2f}x"] for r in rows]
    return format_table(body, ["op", "shape", "impl", "ms", "GFLOP/s", "% peak", "vs best torch"])


def save(rows: list, path: str, meta: dict) -> None:
    if path.endswith(".csv"):
        import csv

        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        with open(path, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


def plot(rows: list, path: str, peak: float) -> None:
    """Grouped bars of GFLOP/s per shape and implementation, with the machine's peak as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(shapes)), 4.5))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        vals = [next((r["gflops"] for r in rows if r["shape"] == s and r["impl"] == impl), 0) for s in shapes]
        ax.bar([j + i * width for j in range(len(shapes))], vals, width, label=impl)
    ax.axhline(peak, color="k", linestyle="--", linewidth=1, label=f"fp32 FMA peak {peak:.0f}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))])
    ax.set_xticklabels(shapes, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s (direct-conv FLOPs)")
    ax.set_title(f"sft_kernels vs PyTorch, {rows[0]['threads']} thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
