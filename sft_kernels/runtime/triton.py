"""The Triton backend's availability and the loading of Triton kernel modules (each op keeps its own, e.g.
`sft_kernels/ops/conv2d/triton.py`, with its tile configs beside it).

Importing this module never imports Triton. Use:

    ok, why = sft_kernels.runtime.triton.status()     # can the Triton backend run here, and if not, why
    mod = sft_kernels.runtime.triton.load("sft_kernels.ops.conv2d.triton")   # an op's kernel module

Without a CUDA GPU the kernels run through the Triton interpreter: `load()` sets
``TRITON_INTERPRET=1`` before the kernel module is imported, because Triton reads that flag
when ``@triton.jit`` decorates a function, not when the kernel is launched. The interpreter is
exact but very slow (~3 ms per program x inner-loop iteration): correctness tests only.

Interpreter trap: Triton's own standard-library helpers (``tl.cdiv``, ``tl.max``, ``tl.sum``, ...)
are ``@triton.jit`` functions decorated when ``triton.language`` is first imported; if that
happened before TRITON_INTERPRET=1 was set (``torch.compile`` on a CPU imports triton, for
example), calling them inside an interpreted kernel fails with "Cannot call @triton.jit'd outside
of the scope of a kernel". ``status()`` therefore sets the flag before it first imports Triton on
a machine without a GPU, and kernels here use only builtins (``(a + b - 1) // b`` for ``tl.cdiv``,
``tl.full(shape, 0.0, dtype)`` for ``tl.zeros``), so they also run when someone imported triton first.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import re
import sys

__all__ = ["status", "load"]


def _version_tuple(text: str) -> tuple:
    """"3.6.0+git1a2b" -> (3, 6, 0); "2.4.0rc1" -> (2, 4, 0)."""
    out = []
    for part in text.split(".")[:3]:
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
        if m.end() != len(part):
            break
    return tuple(out)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.lru_cache(maxsize=None)
def status() -> tuple:
    """(available, reason): whether Triton kernels can run on this machine; reason says why not.

    Without a CUDA GPU this sets TRITON_INTERPRET=1 before it first imports Triton (see below);
    the kernel modules themselves are imported only by ``load()``.
    """
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install 'triton>=3.6'; Linux x86_64 wheels only)"
    if not _cuda_available() and "triton" not in sys.modules:
        # Without a GPU Triton can only run interpreted, and the flag must be set before triton is
        # first imported: triton.language's own @jit helpers (tl.cdiv, tl.max, tl.sum, ...) are
        # decorated at import, and non-interpreted ones fail inside an interpreted kernel
        # ("Cannot call @triton.jit'd outside of the scope of a kernel").
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception as e:  # a broken install raises all sorts of things, not only ImportError
        return False, f"triton is installed but failed to import: {type(e).__name__}: {e}"

    version = getattr(triton, "__version__", "0")
    if not _cuda_available():
        # PERF_NOTES: the Triton 3.6 interpreter breaks with numpy >= 2.4 ("only 0-dimensional
        # arrays can be converted to Python scalars", triton-lang/triton#9171); 3.9 works.
        try:
            import numpy

            np_version = numpy.__version__
        except Exception as e:
            return False, f"no CUDA GPU, and the Triton interpreter needs numpy, which failed to import: {e}"
        if _version_tuple(version) < (3, 7) and _version_tuple(np_version) >= (2, 4):
            return False, (
                f"no CUDA GPU, and the interpreter of triton {version} is broken with numpy {np_version} "
                "(triton-lang/triton#9171); use triton>=3.7 or numpy<2.4"
            )
        return True, f"triton {version} via the interpreter (TRITON_INTERPRET=1): no CUDA GPU, correctness only"
    return True, f"triton {version} on CUDA"


def load(module: str):
    """Import and return an op's Triton kernel module (e.g. "sft_kernels.ops.conv2d.triton").

    Raises ImportError (with the reason from `status()`) when Triton cannot run here.
    """
    ok, why = status()
    if not ok:
        raise ImportError(f"the Triton backend is not available: {why}")
    if not _cuda_available():
        # Must happen before the module below runs its @triton.jit decorators.
        os.environ["TRITON_INTERPRET"] = "1"
    return importlib.import_module(module)


@functools.lru_cache(maxsize=None)
def _configs(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def tile_config(module_file: str, kernel) -> dict:
    """An op's tile config from the configs/triton.json beside its kernel module (`module_file`): its "interpreter"
    entry when `kernel` runs under the Triton interpreter, else "default"."""
    interpreted = type(kernel).__name__ == "InterpretedFunction"
    return _configs(os.path.join(os.path.dirname(module_file), "configs", "triton.json"))[
        "interpreter" if interpreted else "default"]
