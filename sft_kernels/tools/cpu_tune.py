"""Sweep the cpu backend's GEMM cache blocking (MC, KC, NC) for one M×N×K problem, side by side with
torch.matmul, for kernel developers: `sft-kernels tune --op gemm --shape M,N,K`.

Every candidate runs interleaved with torch.matmul in one process (medians, as in the benchmarks); the engine's
blocking is switched per call with `torch.ops.sft_cpu.set_gemm_blocking` and restored afterwards. The winner
is printed as the `SFT_KERNELS_GEMM_BLOCKING=MC,KC,NC` setting that applies it; nothing is cached.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import torch

from .. import backends
from .benchmark import time_interleaved

# MC: rows of an A block (a multiple of the kernel's MR); KC: k per block (B micro-panels of KC×NR stay in
# L1/L2); NC: columns of a B block (KC×NC in L2).
DEFAULT_CANDIDATES = [(mc, kc, nc) for mc in (56, 112, 224) for kc in (256, 512) for nc in (512, 1024)]


def current_blocking() -> tuple:
    """(MC, KC, NC) the engine uses now (defaults, SFT_KERNELS_GEMM_BLOCKING or an override)."""
    cfg = torch.ops.sft_cpu.gemm_config()
    vals = dict(re.findall(r"(MC|KC|NC)=(\d+)", cfg))
    return int(vals["MC"]), int(vals["KC"]), int(vals["NC"])


def sweep_gemm_blocking(m: int, n: int, k: int, candidates: Optional[Sequence[tuple]] = None, repeat: int = 10,
                        min_time: float = 1.0) -> dict:
    """Time torch.matmul and the cpu GEMM under each (MC, KC, NC) on random m×k @ k×n operands.

    Returns {"default": (mc, kc, nc), "torch_ms": t, "rows": [{"blocking", "ms", "gflops", "vs_torch"}...]}
    with rows fastest first; the blocking in force before the call is restored."""
    if min(m, n, k) < 1:
        raise ValueError(f"M, N and K must be positive, got {m}x{n}x{k}")
    backends.cpu_ext()  # registers torch.ops.sft_cpu (raises BackendUnavailableError with the reason if missing)
    cands = list(candidates or DEFAULT_CANDIDATES)
    for c in cands:
        if len(c) != 3 or min(c) < 1:
            raise ValueError(f"each candidate must be three positive ints (MC, KC, NC), got {c!r}")
    before = current_blocking()
    a, b = torch.randn(m, k), torch.randn(k, n)

    def run(cfg):
        torch.ops.sft_cpu.set_gemm_blocking(*cfg)
        return torch.ops.sft_cpu.matmul(a, b)

    fns = {"torch": lambda: torch.matmul(a, b)}
    fns.update({c: (lambda c=c: run(c)) for c in cands})
    try:
        times = time_interleaved(fns, repeat=repeat, min_time=min_time)
    finally:
        torch.ops.sft_cpu.set_gemm_blocking(*before)
    flops = 2 * m * n * k
    rows = [dict(blocking=c, ms=times[c] * 1e3, gflops=flops / times[c] / 1e9, vs_torch=times["torch"] / times[c])
            for c in cands]
    return dict(default=before, torch_ms=times["torch"] * 1e3, rows=sorted(rows, key=lambda r: r["ms"]))
