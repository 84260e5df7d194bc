"""sft.sft_modulation: an SFT layer's output for the conv that reads it, as one op.

    out = x·(scale + 1) + shift,   scale = conv1x1(mid_s; w_s, b_s),   shift = conv1x1(mid_t; w_t, b_t)

x: the float32 feature map the layer modulates [N, K, H, W]; mid_s, mid_t: the layer's first convs' outputs
[N, C, H, W] (channel slices of one channels_last map are read in place); w_s, w_t: [K, C, 1, 1]. On the cpu both
convs' sums for 7 pixels × 32 channels stay in registers and only x and the output pass through memory: SFTNet's
fused forward used to write both maps (4 MB each at 64 channels × 128²) and apply the modulation inside the next
conv's Winograd input transform, which transforms each input value ~2.25 times (the trunk conv 3.8 → 4.9 ms).
`reference.py`: two F.conv2d and the modulation; `cpu.py`: the kernel's launcher. The int8 form is
sft.qsft_modulation; ``bf16=True`` runs the two convs in bf16 on AMX tiles or AVX512-BF16 vectors
(sft_modulation_bf16.cpp).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import PLAIN, Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("sft_modulation", {"reference": (torch.float32, torch.float64), "cpu": (torch.float32,)})


def _impl_reference(x, mid_s, w_s, b_s, mid_t, w_t, b_t, bf16):
    if bf16:  # the definition: mid maps and weights rounded to bfloat16, float32 sums and modulation
        mid_s, w_s, mid_t, w_t = (t.to(torch.bfloat16).to(t.dtype) for t in (mid_s, w_s, mid_t, w_t))
    return ref.sft_modulation(x, mid_s, w_s, b_s, mid_t, w_t, b_t).contiguous(
        memory_format=torch.channels_last)


_IMPLS = {"reference": _impl_reference, "cpu": cpu.sft_modulation}


@torch.library.custom_op("sft::sft_modulation", mutates_args=())
def _op(x: torch.Tensor, mid_s: torch.Tensor, w_s: torch.Tensor, b_s: Optional[torch.Tensor], mid_t: torch.Tensor,
        w_t: torch.Tensor, b_t: Optional[torch.Tensor], bf16: bool, backend: str) -> torch.Tensor:
    return _IMPLS[backend](x, mid_s, w_s, b_s, mid_t, w_t, b_t, bf16)


@_op.register_fake
def _(x, mid_s, w_s, b_s, mid_t, w_t, b_t, bf16, backend):
    return torch.empty_like(x, memory_format=torch.channels_last)


# gradients through the plain-PyTorch definition: a converted SFTNet's fused forward runs this op, and fine-tuning it
# (or taking gradients for its input) must work as on the eager model
register_reference_autograd(_op, lambda x, ms, ws, bs, mt, wt, bt, _bf16, _backend: ref.sft_modulation(
                                x, ms, ws, bs, mt, wt, bt),
                            (0, 1, 2, 3, 4, 5, 6))

OP = Op("sft_modulation", _op, _IMPLS, autotune=False)


def _check(x, mid_s, w_s, b_s, mid_t, w_t, b_t, bf16) -> tuple:
    checks.tensor(x, "x", 4)
    for name, mid, w, b in (("mid_s", mid_s, w_s, b_s), ("mid_t", mid_t, w_t, b_t)):
        checks.tensor(mid, name, 4, like=x)
        checks.tensor(w, f"{name} weight", 4, like=x)
        if tuple(w.shape) != (x.shape[1], mid.shape[1], 1, 1):
            raise ValueError(f"the {name} conv must be 1×1 from {mid.shape[1]} to x's {x.shape[1]} channels: weight "
                             f"shape {(x.shape[1], mid.shape[1], 1, 1)}, got {tuple(w.shape)}")
        if mid.shape[0] != x.shape[0] or mid.shape[2:] != x.shape[2:]:
            raise ValueError(f"{name} must have x's batch and spatial size {(x.shape[0], *x.shape[2:])}, got "
                             f"{(mid.shape[0], *mid.shape[2:])}")
        if b is not None:
            checks.tensor(b, f"{name} bias", 1, like=x)
            if b.shape[0] != x.shape[1]:
                raise ValueError(f"{name} bias must have {x.shape[1]} elements, got {b.shape[0]}")
    if not isinstance(bf16, bool):
        raise TypeError(f"bf16 must be a bool, got {bf16!r}")
    return (bf16,)


def sft_modulation(x: torch.Tensor, mid_s: torch.Tensor, w_s: torch.Tensor, b_s: Optional[torch.Tensor],
                   mid_t: torch.Tensor, w_t: torch.Tensor, b_t: Optional[torch.Tensor], *, bf16: bool = False,
                   backend: Optional[str] = None) -> torch.Tensor:
    """x·(conv1x1(mid_s; w_s, b_s) + 1) + conv1x1(mid_t; w_t, b_t), channels_last (see the module docstring).
    ``bf16``: the two convs' mid maps and weights rounded to bfloat16 and summed in float32 (bias and modulation in
    float32), on AMX tiles or AVX512-BF16 vectors on the cpu (`sft_kernels.backends.bf16_available()`): the SFT
    layers of a model converted with fp32_precision="bf16"."""
    tensors = (x, mid_s, w_s, b_s, mid_t, w_t, b_t)
    sig = None
    if all(t is None or type(t) in PLAIN for t in tensors) and not torch.compiler.is_compiling() \
            and type(bf16) is bool:
        sig = tuple(None if t is None else (t.shape, t.stride(), t.dtype, t.device) for t in tensors) + (bf16,)
    return dispatch(OP, backend, tensors, sig, lambda: _check(*tensors, bf16), x)
