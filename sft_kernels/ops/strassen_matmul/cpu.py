"""The `cpu` backend of sft.strassen_matmul: Strassen over the C++ GEMM engine (csrc/cpu/strassen/)."""
from __future__ import annotations

import torch

from ...runtime import registry
from . import reference as ref


def _gemm(x, y):
    return torch.ops.sft_cpu.matmul(x, y)  # 2-D in, 2-D out


def strassen_matmul(a, b, levels, cutoff):
    """The deepest level is one fused "ABC Strassen" call (quadrant sums formed while packing A and B panels,
    ±products added in the tile stores); levels above it are Strassen–Winograd recursion with ATen additions;
    odd sizes are peeled. Default cutoff 1024 on the CPU: below it the extra additions cost more than the saved
    multiply."""
    registry.cpu_ext()
    if a.numel() == 0 or b.numel() == 0:
        return torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype)
    return ref.strassen_matmul(a, b, levels, 1024 if cutoff is None else cutoff, mm=_gemm,
                               last_level=torch.ops.sft_cpu.strassen_abc)
