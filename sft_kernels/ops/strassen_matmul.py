"""sft.strassen_matmul: C = A @ B (2-D) by Strassen–Winograd recursion with dynamic peeling."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, reference
from . import _checks
from ._autograd import register_reference_autograd

def _cpu_gemm(x, y):
    return torch.ops.sft_cpu.matmul(x, y)  # 2-D in, 2-D out


def _impl_cpu(a, b, levels, cutoff):
    """Strassen over the C++ GEMM engine: the deepest level is one fused "ABC Strassen" call (quadrant sums
    formed while packing A and B panels, ±products added in the tile stores: csrc/cpu/strassen.cpp); levels
    above it are Strassen–Winograd recursion with ATen additions; odd sizes are peeled. Default cutoff 1024 on
    the CPU: below it the extra additions cost more than the saved multiply."""
    backends.cpu_ext()
    return reference.strassen_matmul(a, b, levels, 1024 if cutoff is None else cutoff, mm=_cpu_gemm,
                                     last_level=torch.ops.sft_cpu.strassen_abc)


_IMPLS = {"reference": reference.strassen_matmul, "cpu": _impl_cpu}


@torch.library.custom_op("sft::strassen_matmul", mutates_args=())
def _strassen_op(a: torch.Tensor, b: torch.Tensor, levels: Optional[int], cutoff: Optional[int],
                 backend: str) -> torch.Tensor:
    return _IMPLS[backend](a, b, levels, cutoff)


@_strassen_op.register_fake
def _(a, b, levels, cutoff, backend):
    return a.new_empty((a.shape[0], b.shape[1]))


register_reference_autograd(_strassen_op, lambda a, b, levels, cutoff, backend: a @ b, (0, 1))


def strassen_matmul(a: torch.Tensor, b: torch.Tensor, *, levels: Optional[int] = None,
                    cutoff: Optional[int] = None, backend: Optional[str] = None) -> torch.Tensor:
    """C = A @ B for 2-D A (M×K), B (K×N) with Strassen–Winograd (7 products per level).

    ``levels``: recursion depth (None: recurse while all dims > ``cutoff``); ``cutoff``: size at or below
    which plain GEMM is used (default 128). Odd dimensions are peeled, not padded. Error grows with depth
    (each level adds roughly one extra rounding of the operand magnitudes), unlike plain GEMM.
    """
    _checks.tensor(a, "a", 2)
    _checks.tensor(b, "b", 2, like=a)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a has {a.shape[1]} columns but b has {b.shape[0]} rows")
    for name, v in (("levels", levels), ("cutoff", cutoff)):
        if v is not None and (not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {v!r}")
    return _strassen_op(a, b, levels, cutoff, backends.resolve_for(backend, "strassen_matmul", a))
