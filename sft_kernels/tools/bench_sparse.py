"""`sft-kernels bench --sparse`: the sparse conv per sparsity and pattern against our dense paths, side by side.

For each shape: our dense direct conv, our best dense conv (Winograd where it applies and pays: what sft.conv2d runs
by default), and sft.sparse_conv2d on weights pruned unstructured and in blocks of 4 output channels at each
sparsity, all interleaved in one process on the same channels_last input (medians). Reported: ms, the useful
GFLOP/s (FLOPs of the nonzeros only), and time ratios against the direct and the best dense conv; the plot shows
the speed-up over sparsity per pattern with the dense paths as lines, so the crossover is where a curve crosses.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ..transforms.prune import masks
from .bench_suite import MIN_SECONDS, _shapes, winograd_eligible
from .benchmark import format_table, time_interleaved
from .shapes import ConvShape, sftnet_conv_shapes

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
PATTERNS = ("unstructured", "block")


def default_shapes(quick: bool = False) -> list:
    """SFTNet's trunk 3×3 conv and its 1×1 SFT convs (the layers that dominate its time), at a 128² LR input, or
    the trunk alone at 32² with --quick; plus the 128-channel 3×3 conv of the seed's table."""
    if quick:
        return [ConvShape("trunk 64→64 3×3 @32", 1, 64, 32, 32, 64, 3, 3, padding=1)]
    keep = ("trunk 64→64 3×3", "sft1 32→64 1×1", "cond 128→128 1×1")
    return [s for s in sftnet_conv_shapes(128) if s.name in keep] + [
        ConvShape("128→128 3×3 @64", 1, 128, 64, 64, 128, 3, 3, padding=1)]


def _masked(w: torch.Tensor, pattern: str, sparsity: float) -> torch.Tensor:
    if sparsity == 0:
        return w
    m = masks.unstructured(w, sparsity) if pattern == "unstructured" else masks.block(w, sparsity, 4)
    return w * m


def candidates(s: ConvShape, sparsities=SPARSITIES, patterns=PATTERNS) -> tuple:
    """({name: fn}, {name: useful FLOPs}) for one shape."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(s.n, s.c, s.h, s.w, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(s.k, s.c // s.groups, s.r, s.s, generator=gen)
    b = torch.randn(s.k, generator=gen)
    args = (s.stride, s.padding, s.dilation, s.groups)
    fns = {"dense direct": lambda: ops.conv2d(x, w, b, *args, backend="cpu", algorithm="direct")}
    flops = {"dense direct": s.flops}
    if winograd_eligible(s):
        fns["dense winograd"] = lambda: ops.conv2d(x, w, b, *args, backend="cpu", algorithm="winograd")
        flops["dense winograd"] = s.flops
    for pattern in patterns:
        for sp in sparsities:
            ws = _masked(w, pattern, sp)
            name = f"{pattern} {sp:.0%}"
            fns[name] = lambda ws=ws: ops.sparse_conv2d(x, ws, b, *args, backend="cpu")
            flops[name] = s.flops * float((ws != 0).float().mean())
    return fns, flops


def run(quick: bool = False, repeat: int = 7, progress: bool = True, shapes: Optional[list] = None) -> list:
    rows = []
    for s in _shapes(progress, shapes or default_shapes(quick), "sparse conv shapes"):
        fns, flops = candidates(s)
        with torch.no_grad():
            times = time_interleaved(fns, repeat=repeat, min_time=0.0 if quick else MIN_SECONDS)
        direct = times["dense direct"]
        best = min(direct, times.get("dense winograd", direct))
        for name, t in times.items():
            pattern, _, sp = name.rpartition(" ")
            rows.append(dict(op="sparse_conv2d", shape=s.name, impl=name, pattern=pattern,
                             sparsity=float(sp.rstrip("%")) / 100 if sp.endswith("%") else None, ms=t * 1e3,
                             gflops=flops[name] / t / 1e9, vs_direct=direct / t, vs_best=best / t,
                             threads=torch.get_num_threads()))
    return rows


def table(rows: list) -> str:
    body = [[r["shape"], r["impl"], f"{r['ms']:.3f}", f"{r['gflops']:.1f}", f"{r['vs_direct']:.2f}x",
             f"{r['vs_best']:.2f}x"] for r in rows]
    return format_table(body, ["shape", "impl", "ms", "useful GFLOP/s", "vs dense direct", "vs dense best"])


def plot(rows: list, path: str) -> None:
    """Speed-up over our direct conv against sparsity, one panel per shape, one curve per pattern; the dense
    paths as horizontal lines (the crossover is where a curve passes the best dense line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.2 * len(shapes), 3.8), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        rs = [r for r in rows if r["shape"] == shape]
        for pattern in PATTERNS:
            pts = sorted((r["sparsity"], r["vs_direct"]) for r in rs if r["pattern"] == pattern)
            if pts:
                ax.plot([100 * p for p, _ in pts], [v for _, v in pts], marker="o", label=f"sparse, {pattern}")
        ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="dense direct")
        wino = [r["vs_direct"] for r in rs if r["impl"] == "dense winograd"]
        if wino:
            ax.axhline(wino[0], color="tab:red", linestyle=":", linewidth=1.5, label="dense Winograd")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.1fx"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.1fx"))
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("speed-up over our dense direct conv")
        ax.set_title(shape, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"sft.sparse_conv2d vs dense, {rows[0]['threads']} thread(s), channels_last", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
