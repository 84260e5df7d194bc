"""The `cpu` backend of sft.matmul: the C++ GEMM engine (csrc/cpu/matmul/), 2-D or batched."""
from __future__ import annotations

import torch

from ...runtime import registry


def shape(a_shape, b_shape) -> list:
    """Output shape of torch.matmul for these operand shapes (validated)."""
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise ValueError("a and b must be at least 1-D (use * for scalars)")
    a2 = [1] + list(a_shape) if len(a_shape) == 1 else list(a_shape)
    b2 = list(b_shape) + [1] if len(b_shape) == 1 else list(b_shape)
    if a2[-1] != b2[-2]:
        raise ValueError(f"a has {a2[-1]} columns but b has {b2[-2]} rows: shapes {tuple(a_shape)} @ {tuple(b_shape)}")
    if len(a_shape) == 2 and len(b_shape) == 2:  # no batch: torch.broadcast_shapes alone costs ~10 µs
        return [a2[0], b2[1]]
    batch = list(torch.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
    out = batch + [a2[-2], b2[-1]]
    if len(a_shape) == 1:
        out.pop(-2)
    if len(b_shape) == 1:
        out.pop(-1)
    return out


def matmul(a, b):
    """Broadcast to (B, M, K) @ (B, K, N) views (stride-0 batch where broadcast) for the C++ GEMM."""
    registry.cpu_ext()  # registers torch.ops.sft_cpu
    if a.numel() == 0 or b.numel() == 0:  # zero-size operands: torch.matmul's empty or zero result
        return torch.zeros(shape(a.shape, b.shape), dtype=a.dtype)
    if a.dim() == 2 and b.dim() == 2:  # the op takes 2-D operands as they are (no per-call views)
        return torch.ops.sft_cpu.matmul.default(a, b)
    out_shape = shape(a.shape, b.shape)
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = a2.expand(*batch, *a2.shape[-2:]).reshape(-1, *a2.shape[-2:]) if batch else a2.unsqueeze(0)
    b3 = b2.expand(*batch, *b2.shape[-2:]).reshape(-1, *b2.shape[-2:]) if batch else b2.unsqueeze(0)
    return torch.ops.sft_cpu.matmul(a3, b3).reshape(out_shape)
