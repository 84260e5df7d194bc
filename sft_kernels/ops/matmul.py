"""sft.matmul: torch.matmul semantics (2-D, batched with broadcasting, 1-D operands promoted)."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, reference
from . import _checks
from ._autograd import register_reference_autograd


def matmul_shape(a_shape, b_shape) -> list:
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


def _impl_cpu(a, b):
    """Broadcast to (B, M, K) @ (B, K, N) views (stride-0 batch where broadcast) for the C++ GEMM."""
    backends.cpu_ext()  # registers torch.ops.sft_cpu
    if a.dim() == 2 and b.dim() == 2:  # the op takes 2-D operands as they are (no per-call views)
        return torch.ops.sft_cpu.matmul(a, b)
    out_shape = matmul_shape(a.shape, b.shape)
    a2 = a.unsqueeze(0) if a.dim() == 1 else a
    b2 = b.unsqueeze(-1) if b.dim() == 1 else b
    batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = a2.expand(*batch, *a2.shape[-2:]).reshape(-1, *a2.shape[-2:]) if batch else a2.unsqueeze(0)
    b3 = b2.expand(*batch, *b2.shape[-2:]).reshape(-1, *b2.shape[-2:]) if batch else b2.unsqueeze(0)
    return torch.ops.sft_cpu.matmul(a3, b3).reshape(out_shape)


_IMPLS = {"reference": lambda a, b: reference.matmul(a, b).contiguous(), "cpu": _impl_cpu}


@torch.library.custom_op("sft::matmul", mutates_args=())
def _matmul_op(a: torch.Tensor, b: torch.Tensor, backend: str) -> torch.Tensor:
    return _IMPLS[backend](a, b)


@_matmul_op.register_fake
def _(a, b, backend):
    return a.new_empty(matmul_shape(a.shape, b.shape))


register_reference_autograd(_matmul_op, lambda a, b, backend: reference.matmul(a, b), (0, 1))


_ENV = backends._ENV_DATA if type(backends._ENV_DATA) is dict else None
_CHOSEN, _F32 = backends._CHOSEN, torch.float32
_EAGER = []  # the extension's matmul_eager, once the cpu backend has been chosen for float32


def matmul(a: torch.Tensor, b: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Drop-in ``torch.matmul(a, b)`` for floating tensors."""
    # The common eager call in as few Python operations as possible: after a large GEMM the interpreter runs with
    # cold caches, and each helper call cost ~5 µs (0.27 ms GEMM, side by side). Once the cpu backend has been
    # chosen for float32 CPU operands (backends.resolve_for's memo, same key), the extension checks the operands
    # and runs the GEMM in one C call, or returns None for anything it does not take.
    if _EAGER and (backend is None or type(backend) is str) and not torch.compiler.is_compiling():
        v = _ENV.get(b"SFT_KERNELS_BACKEND")
        if _CHOSEN.get((backend, "matmul", "cpu", _F32, v.decode() if v else None)) == "cpu":
            y = _EAGER[0](a, b)
            if y is not None:
                return y
    if (type(a) is torch.Tensor and type(b) is torch.Tensor and a.is_cpu and b.is_cpu and a.dim() == 2
            and b.dim() == 2 and a.dtype is b.dtype and a.is_floating_point() and a.shape[1] == b.shape[0]
            and not a.requires_grad and not b.requires_grad and not torch.compiler.is_compiling()):
        name = backends.resolve_for(backend, "matmul", a)
        if name == "cpu" and not _EAGER and _ENV is not None:
            _EAGER.extend(filter(None, [getattr(backends.cpu_ext(), "matmul_eager", None)]))
        return torch.ops.sft_cpu.matmul.default(a, b) if name == "cpu" else _IMPLS[name](a, b)
    _checks.tensor(a, "a")
    _checks.tensor(b, "b", like=a)
    matmul_shape(a.shape, b.shape)
    name = backends.resolve_for(backend, "matmul", a)
    if _checks.direct_call_ok(a, b):
        return _IMPLS[name](a, b)
    return _matmul_op(a, b, name)
