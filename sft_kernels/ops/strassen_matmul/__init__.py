"""sft.strassen_matmul: C = A @ B (2-D) by Strassen–Winograd recursion with dynamic peeling.

The op (schema `sft::strassen_matmul`, fake kernel, reference autograd, registry entry) and its public function;
the cpu launcher is `cpu.py`, the plain-PyTorch recursion `reference.py`.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("strassen_matmul", {"reference": registry.FLOATS, "cpu": (torch.float32,)})

_IMPLS = {"reference": ref.strassen_matmul, "cpu": cpu.strassen_matmul}


@torch.library.custom_op("sft::strassen_matmul", mutates_args=())
def _strassen_op(a: torch.Tensor, b: torch.Tensor, levels: Optional[int], cutoff: Optional[int],
                 backend: str) -> torch.Tensor:
    return _IMPLS[backend](a, b, levels, cutoff)


@_strassen_op.register_fake
def _(a, b, levels, cutoff, backend):
    return a.new_empty((a.shape[0], b.shape[1]))


register_reference_autograd(_strassen_op, lambda a, b, levels, cutoff, backend: a @ b, (0, 1))

OP = Op("strassen_matmul", _strassen_op, _IMPLS)


def _check(a, b, levels, cutoff) -> tuple:
    checks.tensor(a, "a", 2)
    checks.tensor(b, "b", 2, like=a)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a has {a.shape[1]} columns but b has {b.shape[0]} rows")
    for name, v in (("levels", levels), ("cutoff", cutoff)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {v!r}")
    return levels, cutoff


def strassen_matmul(a: torch.Tensor, b: torch.Tensor, *, levels: Optional[int] = None,
                    cutoff: Optional[int] = None, backend: Optional[str] = None) -> torch.Tensor:
    """C = A @ B for 2-D A (M×K), B (K×N) with Strassen–Winograd (7 products per level).

    ``levels``: recursion depth (None: recurse while all dims > ``cutoff``); ``cutoff``: size at or below
    which plain GEMM is used (default 128; 1024 on the cpu backend). Odd dimensions are peeled, not padded.
    Error grows with depth (each level adds roughly one extra rounding of the operand magnitudes), unlike plain
    GEMM.
    """
    return dispatch(OP, backend, (a, b), None, lambda: _check(a, b, levels, cutoff), a)
