"""Measured backend choice for `backend=None` calls (like `cudnn.benchmark`).

"backend=None picks the fastest available" is decided per call signature, not per device: the first call
with a given (shapes, strides, conv parameters, epilogue, threads) times every candidate backend on the real
inputs (interleaved, median of a few runs) and caches the winner for the process; on the CPU a second look
(`SecondLook`) re-measures it against the others over the next calls, in the caller's steady state, and the choice
is final after it (about ten calls of a signature; until then results come from the first winner).
Set SFT_KERNELS_AUTOTUNE=0 to use the static preference order instead; under torch.compile the static order is
always used (the choice must be a trace-time constant). A backend named explicitly (argument or
SFT_KERNELS_BACKEND) always runs; nothing here overrides it.
"""
from __future__ import annotations

import statistics
import threading
import time
from typing import Callable, Dict, Hashable, Sequence

import torch

from . import knobs, registry

_CHOICES: Dict[Hashable, str] = {}


def enabled() -> bool:
    return registry.env("SFT_KERNELS_AUTOTUNE") != "0" and registry.env("SFT_KERNELS_BACKEND") is None


def choices() -> dict:
    """The cached decisions: {call signature: backend}."""
    return dict(_CHOICES)


# Caches elsewhere that hold decisions made here (the ops' memo of validated call signatures): emptied too.
_ON_CLEAR: list = []


# Bumped by clear(): converted modules' own caches of a bound kernel (nn/conv.py) hold decisions made here too.
GENERATION = [0]


def clear() -> None:
    _CHOICES.clear()
    GENERATION[0] += 1
    for fn in _ON_CLEAR:
        fn()


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """Seconds one call of fn takes on `device`. GPU work is asynchronous: a host clock around a launch measures
    the launch, so CUDA candidates are timed with events on the current stream after a synchronize."""
    if device.type != "cuda":
        def host(fn):
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        return host

    def cuda(fn):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    return cuda


def pick(key: Hashable, candidates: Sequence[str], run: Callable[[str], object], rounds: int = 3,
         device: torch.device = torch.device("cpu")) -> str:
    """The fastest of `candidates` for `key`, timing `run(name)` on first sight of the key on `device`.

    While a CUDA graph is being captured nothing can be timed (a synchronize would break the capture): the first
    candidate (the static preference order) is used and nothing is cached, so a later eager call still measures.
    """
    if len(candidates) == 1:
        return candidates[0]
    hit = _CHOICES.get(key)
    if hit is not None:
        return hit
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return candidates[0]
    knobs.check(registry.cpu_ext)  # a knob set wrong raises here, not as a candidate that failed
    timer = _timer(device)
    with torch.no_grad():
        ok, first_error = [], None
        for c in candidates:  # warm-up (packing buffers, first-touch pages, lazy init, JIT compiles)
            try:
                run(c)
                ok.append(c)
            except (NotImplementedError, RuntimeError, ValueError) as e:  # a backend that cannot run this call
                first_error = first_error or e       # (e.g. algorithm="winograd" on the reference backend)
        if not ok:
            raise first_error
        candidates = ok
        if len(candidates) == 1:
            _CHOICES[key] = candidates[0]
            return candidates[0]
        samples = {c: [] for c in candidates}
        for _ in range(rounds):
            for c in candidates:
                samples[c].append(timer(lambda: run(c)))  # noqa: B023 - called at once
    best = min(candidates, key=lambda c: statistics.median(samples[c]))
    _CHOICES[key] = best
    return best


class SecondLook:
    """A CPU decision checked again in the caller's steady state. The first timings run on the first call of a
    signature, when a backend's output buffers may still be fresh pages: F.conv2d's first 5-10 calls of a 12→56 1×1
    conv at 128² took 1.6-3 ms, then 0.4 ms (glibc's mmap threshold rises only after the first large frees), so the
    cpu kernel (0.9-1.4 ms) won and kept the signature. This stands in the dispatch memo for the next calls: each
    runs the winner (its result is the call's, so results do not change until the choice does), timed, and from
    call `WARM` on also one run of another candidate, `ROUNDS` per candidate, timed and discarded. Then the fastest
    run decides (fastest: some runs may still fault in pages): the winner stays unless another is `MARGIN` faster,
    and `settle(name)` puts the final choice in the memo."""

    WARM, ROUNDS, MARGIN = 5, 4, 0.93

    def __init__(self, key: Hashable, chosen: str, candidates: Sequence[str], impl: Callable[[str], Callable],
                 settle: Callable[[str], None]):
        self.key, self.chosen, self.impl, self.settle = key, chosen, impl, settle
        self.plan = [None] * self.WARM + [c for c in candidates if c != chosen for _ in range(self.ROUNDS)]
        self.times: Dict[str, list] = {c: [] for c in candidates}
        self.fns: Dict[str, Callable] = {}
        self.calls = 0
        self.lock = threading.Lock()  # concurrent callers: one plan, decided once

    def _timed(self, name: str, tensors: tuple):
        fn = self.fns.get(name) or self.fns.setdefault(name, self.impl(name))
        t = time.perf_counter()
        out = fn(*tensors)
        self.times[name].append(time.perf_counter() - t)  # (list.append is atomic under the GIL)
        return out

    def __call__(self, *tensors):
        with self.lock:
            step = self.calls
            self.calls += 1
        if step >= len(self.plan):  # a caller that read the memo before the decision was stored
            return self._timed(_CHOICES.get(self.key, self.chosen), tensors)
        out = self._timed(self.chosen, tensors)
        if self.plan[step] is not None:
            self._timed(self.plan[step], tensors)
        if step == len(self.plan) - 1:
            self._decide()
        return out

    def _decide(self) -> None:
        mine = min(self.times[self.chosen])
        best, best_t = self.chosen, mine
        for c, ts in self.times.items():
            if ts and c != self.chosen and min(ts) < min(best_t, self.MARGIN * mine):
                best, best_t = c, min(ts)
        _CHOICES[self.key] = best
        self.settle(best)
