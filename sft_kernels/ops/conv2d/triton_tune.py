"""Tile tuning for the Triton conv2d: sweep the candidate configs of this architecture on one problem,
keep the fastest, and remember it in a per-user cache file so a model tunes once.

Keys bucket the problem: dtype, per-group channels C/g and K/g, kernel, stride, dilation, and the number of
output pixels M rounded up to a power of two. Configs come from `configs/triton.json`.
SFT_KERNELS_TRITON_CONFIG=<name> pins one config everywhere; SFT_KERNELS_CACHE_DIR moves the cache;
SFT_KERNELS_LOG_CONFIG=1 prints the chosen config when a call signature is first planned.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...runtime import checks


def arch() -> str:
    """'sm_90', 'sm_80', ... on a GPU; 'interpreter' when kernels run through the Triton interpreter."""
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"sm_{major}{minor}"
    return "interpreter"


def cache_path() -> Path:
    import triton

    root = Path(os.environ.get("SFT_KERNELS_CACHE_DIR") or Path.home() / ".cache" / "sft_kernels")
    return root / f"triton_conv2d_{arch()}_triton{triton.__version__}.json"


def key(dtype, cg: int, kg: int, r: int, s: int, stride, dilation, m: int) -> str:
    mb = 1 << max(0, (int(m) - 1).bit_length())
    return (f"{str(dtype).replace('torch.', '')}|C{cg}|K{kg}|{r}x{s}|s{stride[0]}x{stride[1]}|"
            f"d{dilation[0]}x{dilation[1]}|M{mb}")


_MEMO: dict = {}
GENERATION = 0  # bumped when this process tunes: the launcher's per-signature plans then look the config up again


def _read() -> dict:
    """The cache file's content, re-read only when the file changes (lookups happen on every launch)."""
    path = cache_path()
    try:
        stamp = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return {}
    if stamp not in _MEMO:
        try:
            _MEMO.clear()
            _MEMO[stamp] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
    return dict(_MEMO[stamp])


def lookup(dtype, cg, kg, r, s, stride, dilation, m) -> Optional[str]:
    """The config name to use for this problem: the pinned one, else the tuned one, else None (heuristic)."""
    pinned = os.environ.get("SFT_KERNELS_TRITON_CONFIG")
    if pinned:
        return pinned
    return _read().get(key(dtype, cg, kg, r, s, stride, dilation, m), {}).get("config")


def _time(fn, repeat: int) -> float:
    if torch.cuda.is_available():
        import triton.testing

        return triton.testing.do_bench(fn, return_mode="median") / 1e3
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def tune_conv2d(n: int, c: int, h: int, w: int, k: int, r: int = 3, s: int = 3, stride: int = 1, padding: int = 0,
                dilation: int = 1, groups: int = 1, dtype=torch.float32, configs: Optional[Sequence[str]] = None,
                repeat: int = 3, force: bool = False) -> dict:
    """Time every candidate config on this problem (unless cached and not `force`); cache and return
    {"key", "config", "cached", "results": [(name, seconds or error), ...]}."""
    from ...runtime import triton as runtime_triton

    tc = runtime_triton.load("sft_kernels.ops.conv2d.triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    p, q = checks.conv_output_hw(h, w, r, s, (stride, stride), (padding, padding), (dilation, dilation))
    kk = key(dtype, c // groups, k // groups, r, s, (stride, stride), (dilation, dilation), n * p * q)
    cache = _read()
    if kk in cache and not force and configs is None:
        return dict(key=kk, config=cache[kk]["config"], cached=True, results=cache[kk]["results"])
    names = list(configs) if configs else tc.CANDIDATES[arch() if arch() in tc.CANDIDATES else "sm_80"]
    unknown = [x for x in names if x not in tc.CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; known: {sorted(tc.CONFIGS)}")
    x = torch.randn(n, c, h, w, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(k, c // groups, r, s, device=device, dtype=dtype)
    results = []
    for name in names:
        try:
            t = _time(lambda: tc.conv2d(x, wt, None, stride, padding, dilation, groups, config=name), repeat)
            results.append((name, t))
        except Exception as e:  # noqa: BLE001 - a config that does not fit (shared memory, ...) is skipped
            results.append((name, f"failed: {type(e).__name__}: {str(e)[:80]}"))
    timed = [(nm, t) for nm, t in results if isinstance(t, float)]
    if not timed:
        raise RuntimeError(f"no candidate config ran for {kk}: {results}")
    best = min(timed, key=lambda e: e[1])[0]
    cache[kk] = dict(config=best, results=results, when=time.strftime("%Y-%m-%dT%H:%M:%S"))
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, path)
    global GENERATION
    GENERATION += 1
    return dict(key=kk, config=best, cached=False, results=results)
