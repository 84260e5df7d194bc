"""Measured backend choice for `backend=None` calls (like `cudnn.benchmark`).

"backend=None picks the fastest available" is decided per call signature, not per device: the first call
with a given (shapes, strides, conv parameters, epilogue, threads) times every candidate backend on the real
inputs (interleaved, median of a few runs) and caches the winner for the process. Set SFT_KERNELS_AUTOTUNE=0
to use the static preference order instead; under torch.compile the static order is always used (the
choice must be a trace-time constant). A backend named explicitly (argument or SFT_KERNELS_BACKEND) always
runs; nothing here overrides it.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, Hashable, Sequence

import torch

from . import backends

_CHOICES: Dict[Hashable, str] = {}


def enabled() -> bool:
    return backends.env("SFT_KERNELS_AUTOTUNE") != "0" and backends.env("SFT_KERNELS_BACKEND") is None


def choices() -> dict:
    """The cached decisions: {call signature: backend}."""
    return dict(_CHOICES)


# Caches elsewhere that hold decisions made here (the ops' memo of validated call signatures): emptied too.
_ON_CLEAR: list = []


def clear() -> None:
    _CHOICES.clear()
    for fn in _ON_CLEAR:
        fn()


def pick(key: Hashable, candidates: Sequence[str], run: Callable[[str], object], rounds: int = 3) -> str:
    """The fastest of `candidates` for `key`, timing `run(name)` on first sight of the key."""
    if len(candidates) == 1:
        return candidates[0]
    hit = _CHOICES.get(key)
    if hit is not None:
        return hit
    samples = {c: [] for c in candidates}
    with torch.no_grad():
        for c in candidates:  # warm-up (packing buffers, first-touch pages, lazy init)
            run(c)
        for _ in range(rounds):
            for c in candidates:
                t = time.perf_counter()
                run(c)
                samples[c].append(time.perf_counter() - t)
    best = min(candidates, key=lambda c: statistics.median(samples[c]))
    _CHOICES[key] = best
    return best
