"""The environment knobs read while the package runs, and a check that their values mean something.

A mistyped knob (SFT_KERNELS_ISA=avx521, SFT_KERNELS_POOL_MB=-5) had run on quietly: the autotuner left out the cpu
backend whose kernel choice raised and ran plain PyTorch, or a negative size wrapped to a huge cap. `problems()`
lists every knob set to a value it does not take, or to a kernel this CPU cannot run; the ops raise on their first
call (`registry`), and `sft-kernels info` prints the list. Build-time knobs (SFT_KERNELS_EXT, _NATIVE, _STRICT_BUILD,
_CUDA_ARCH) are read by setup.py, and the GPU tile pins by their launchers, which name the choices themselves.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import torch

_BOOL = ("0", "1")


def _non_negative_int(value: str) -> Optional[str]:
    return None if value.isdigit() else "a whole number of MiB, 0 or more"


def _blocking(value: str) -> Optional[str]:
    parts = value.split(",")
    return None if len(parts) == 3 and all(p.strip().isdigit() for p in parts) else "'MC,KC,NC' (0 keeps a default)"


# name -> the values it takes (a tuple) or a check returning what it should be (None when fine)
RUNTIME_KNOBS: dict = {
    "SFT_KERNELS_NO_EXT": _BOOL,
    "SFT_KERNELS_AUTOTUNE": _BOOL,
    "SFT_KERNELS_LOG_CONFIG": _BOOL,
    "SFT_KERNELS_CUDA_SPARSE24": _BOOL,
    "SFT_KERNELS_ISA": ("avx512", "avx2", "generic"),
    "SFT_KERNELS_INT8": ("amx", "vnni", "avxvnni", "avx2", "generic"),
    "SFT_KERNELS_SPARSE": ("avx512", "avx2", "generic"),
    "SFT_KERNELS_WEIGHT_CHECK": ("auto", "version", "full"),
    "SFT_KERNELS_POOL_MB": _non_negative_int,
    "SFT_KERNELS_GEMM_BLOCKING": _blocking,
}

# knob -> the extension's call that makes the choice it names (raising if this CPU cannot run it)
_CPU_CHOICES: dict = {
    "SFT_KERNELS_ISA": lambda: torch.ops.sft_cpu.gemm_config(),
    "SFT_KERNELS_GEMM_BLOCKING": lambda: torch.ops.sft_cpu.gemm_config(),
    "SFT_KERNELS_INT8": lambda: torch.ops.sft_cpu.qconv2d_kernel(),
    "SFT_KERNELS_SPARSE": lambda: torch.ops.sft_cpu.sparse_conv2d_kernel(""),
}


def _value_problem(name: str, value: str) -> Optional[str]:
    rule = RUNTIME_KNOBS[name]
    want = rule(value) if callable(rule) else (None if value in rule else " | ".join(rule))
    return None if want is None else f"{name}={value!r} is not valid: it takes {want}; unset it for the default"


@functools.lru_cache(maxsize=None)
def problems(cpu_ext=None) -> tuple:
    """Messages for the knobs set to a value they do not take, or that name a kernel this CPU cannot run (asked of
    the extension that `cpu_ext()` loads, if given; checked once per process, like the extension's own choices)."""
    out = []
    for name in RUNTIME_KNOBS:
        value = os.environ.get(name)
        if value:
            msg = _value_problem(name, value)
            if msg:
                out.append(msg)
    if out:
        return tuple(out)
    if cpu_ext is not None and cpu_ext() is not None:  # the extension's choices, once the values are ones it takes
        for name, choose in _CPU_CHOICES.items():
            if os.environ.get(name):
                try:
                    choose()
                except RuntimeError as e:
                    why = str(e).splitlines()[0]
                    why = why if why.startswith(name) else f"{name}={os.environ[name]!r}: {why}"
                    out.append(f"{why}; unset it for the default")
    return tuple(out)


def check(cpu_ext=None) -> None:
    """Raise a ValueError listing every knob that is set wrong (see `problems()`)."""
    found = problems(cpu_ext)
    if found:
        raise ValueError("sft_kernels environment: " + "; ".join(found))
