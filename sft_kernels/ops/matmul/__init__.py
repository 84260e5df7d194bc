"""sft.matmul: torch.matmul semantics (2-D, batched with broadcasting, 1-D operands promoted, zero-size operands).

The op (schema `sft::matmul`, fake kernel, reference autograd, registry entry) and its public function; the cpu
launcher is `cpu.py`, the definition `reference.py`.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("matmul", {"reference": registry.FLOATS, "cpu": (torch.float32,)})

_IMPLS = {"reference": lambda a, b: ref.matmul(a, b).contiguous(), "cpu": cpu.matmul}


@torch.library.custom_op("sft::matmul", mutates_args=())
def _matmul_op(a: torch.Tensor, b: torch.Tensor, backend: str) -> torch.Tensor:
    return _IMPLS[backend](a, b)


@_matmul_op.register_fake
def _(a, b, backend):
    return a.new_empty(cpu.shape(a.shape, b.shape))


register_reference_autograd(_matmul_op, lambda a, b, backend: ref.matmul(a, b), (0, 1))


_ENV = registry._ENV_DATA if type(registry._ENV_DATA) is dict else None
_EAGER: list = []  # the extension's matmul_eager, once the cpu backend has been chosen for float32


OP = Op("matmul", _matmul_op, _IMPLS, autotune=False)  # the cpu GEMM is chosen by the static order


def _check(a, b) -> tuple:
    checks.tensor(a, "a")
    checks.tensor(b, "b", like=a)
    cpu.shape(a.shape, b.shape)
    if not _EAGER and _ENV is not None and a.is_cpu and a.dtype == torch.float32 \
            and not torch.compiler.is_compiling() and registry.resolve_for(None, "matmul", a) == "cpu":
        _EAGER.extend(filter(None, [getattr(registry.cpu_ext(), "matmul_eager", None)]))
    return ()


def matmul(a: torch.Tensor, b: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Drop-in ``torch.matmul(a, b)`` for floating tensors."""
    # The common eager call in one C call, before any Python dispatch: once the cpu backend has been chosen for
    # float32 CPU operands (the registry's resolution memo), the extension checks the operands and runs the GEMM,
    # or returns None for anything it does not take. After a large GEMM the interpreter runs with cold caches and
    # each Python helper call cost ~5 µs (0.27 ms GEMM, side by side).
    if _EAGER and (backend is None or type(backend) is str) and not torch.compiler.is_compiling():
        v = _ENV.get(b"SFT_KERNELS_BACKEND")
        if registry._CHOSEN.get((backend, "matmul", "cpu", torch.float32, v.decode() if v else None)) == "cpu":
            y = _EAGER[0](a, b)
            if y is not None:
                return y
    sig = None
    if type(a) is torch.Tensor and type(b) is torch.Tensor and (backend is None or type(backend) is str) \
            and not torch.compiler.is_compiling():
        sig = (a.shape, a.stride(), a.dtype, a.is_cpu, b.shape, b.stride(), b.dtype, b.is_cpu)
    return dispatch(OP, backend, (a, b), sig, lambda: _check(a, b), a)
