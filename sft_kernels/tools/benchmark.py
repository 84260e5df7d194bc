"""Side-by-side timing: candidates run interleaved in one process on the same inputs; medians reported.

These machines are noisy, so absolute times mean little; the ratio of medians measured this way holds.
"""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Dict, Optional

import torch


def measure_peak_gflops() -> tuple:
    """(GFLOP/s, how) — this machine's fp32 FMA peak over torch's threads, for % of peak figures.

    Measured with the extension's FMA loop (independent chains, no memory traffic), so it follows the CPU the
    benchmark runs on. Without the extension, torch.matmul 1024³ throughput stands in (a lower bound)."""
    from .. import backends

    if backends.cpu_ext() is not None:
        torch.ops.sft_cpu.fma_peak_gflops(200_000)  # warm up the frequency
        return max(torch.ops.sft_cpu.fma_peak_gflops(2_000_000) for _ in range(3)), "FMA loop"
    return _matmul_gflops(), "torch.matmul 1024³ (extension not built)"


def measure_ukernel_ceiling(k: int = 576) -> Optional[float]:
    """GFLOP/s of the cpu backend's micro-kernel alone over torch's threads, best of three, its packed A and B
    panels of depth k in cache (at k = 576, a 64-channel 3×3 conv, B streams from L2 as in the convs); None
    without the extension. No direct GEMM or conv built on that kernel can run faster (Winograd does fewer FLOPs),
    so their % of peak figures are read against it: the FMA loop of measure_peak_gflops does no loads."""
    from .. import backends

    if backends.cpu_ext() is None:
        return None
    torch.ops.sft_cpu.ukernel_ceiling_gflops(k, 20_000)  # warm up
    return max(torch.ops.sft_cpu.ukernel_ceiling_gflops(k, 4_000_000 // k) for _ in range(3))


def _matmul_gflops(seconds: float = 0.3) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def time_interleaved(fns: Dict[str, Callable[[], object]], repeat: int = 15, warmup: int = 2,
                     min_time: float = 0.0, shuffle: bool = True, seed: int = 0) -> Dict[str, float]:
    """Median seconds per call of each fn; one round calls every fn once.

    With `shuffle` each round calls them in a fresh (seeded) random order: a call's time depends on the call
    before it (what that left in the caches and write-back queues), and in a fixed order each fn always follows
    the same one. Two variants of one conv (cond_in), interleaved after F.conv2d in a fixed order, measured
    1-7 % apart in favour of whichever ran second, in either order."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    samples = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(seed)
    rounds, t_start = 0, time.perf_counter()
    while rounds < repeat or time.perf_counter() - t_start < min_time:
        if shuffle:
            rng.shuffle(order)
        for name in order:
            f = fns[name]
            t = time.perf_counter()
            f()
            samples[name].append(time.perf_counter() - t)
        rounds += 1
    return {k: statistics.median(v) for k, v in samples.items()}


def format_table(rows: list, headers: list) -> str:
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(x) for x in col) for col in cols]
    line = lambda vals: "  ".join(str(v).rjust(w) if i else str(v).ljust(w)  # noqa: E731
                                  for i, (v, w) in enumerate(zip(vals, widths)))
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def model_rows(times: Dict[str, float], flops: float, peak: float, threads: int, baseline: float) -> list:
    """Rows of a whole-model benchmark, one per implementation timed (seconds in `times`): ms, conv GFLOP/s, % of
    the fp32 FMA `peak` and the speed-up over `baseline` seconds (eager's)."""
    return [dict(threads=threads, impl=name, ms=t * 1e3, gflops=flops / t / 1e9, pct_peak=100 * flops / t / 1e9 / peak,
                 vs_eager=baseline / t) for name, t in times.items()]


def time_models(fns: Dict[str, Callable[[], object]], flops: float, threads: int,
                baseline: Callable[[Dict[str, float]], float], repeat: int = 10, warmup: int = 2) -> tuple:
    """One thread count of a whole-model benchmark (`threads`, already set): this machine's fp32 FMA peak, then
    `fns` timed interleaved under torch.no_grad(). Returns (model_rows against baseline(times) seconds, the peak)."""
    peak, _ = measure_peak_gflops()
    with torch.no_grad():
        times = time_interleaved(fns, repeat=repeat, warmup=warmup)
    return model_rows(times, flops, peak, threads, baseline(times)), peak


def model_table(rows: list, vs: str = "vs eager") -> str:
    """model_rows as a table; `vs` names the baseline column."""
    return format_table([[r["threads"], r["impl"], f"{r['ms']:.2f}", f"{r['gflops']:.0f}", f"{r['pct_peak']:.0f}%",
                          f"{r['vs_eager']:.2f}x"] for r in rows],
                        ["threads", "impl", "ms", "conv GFLOP/s", "% fp32 peak", vs])
