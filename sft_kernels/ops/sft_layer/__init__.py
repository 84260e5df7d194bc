"""sft.sft_layer: a whole float SFT layer (SFTGAN) for the conv that reads its output, as one op.

    mid_s = leaky_relu(conv1x1(cond; w0_s, b0_s))     mid_t likewise (w0_t, b0_t)
    out = x·(conv1x1(mid_s; w1_s, b1_s) + 1) + conv1x1(mid_t; w1_t, b1_t)      (channels_last)

x: the float32 feature map the layer modulates [N, K, H, W]; cond: the condition map [N, C, H, W]. ``bf16=True`` (a
model converted with fp32_precision="bf16") rounds every conv's input and weight to bfloat16 (the mid maps after
their bias and activation) and sums in float32: on the cpu the whole layer runs per block of 32 pixels on AMX tiles
(or AVX512-BF16 vectors), the mid maps kept in per-thread rows, never written (SFTNet: 1.79 → 0.84 ms a layer
against its first convs' bf16 conv and sft_modulation(bf16=True), which give the same bits; Zen 4's vectors: 2.26 →
1.34 ms against the float32 layer). In float32 the cpu runs the first convs as one conv
and sft.sft_modulation. The int8 form is sft.qsft_layer. `reference.py` defines it; `cpu.py` launches it.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.autograd import register_reference_autograd
from ...runtime.dispatch import Op, dispatch, eager_signature_ok, meta
from . import cpu
from . import reference as ref

registry.register_op("sft_layer", {"reference": (torch.float32, torch.float64), "cpu": (torch.float32,)})


def _impl_reference(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, slope, bf16):
    return ref.sft_layer(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, slope, bf16).contiguous(
        memory_format=torch.channels_last)


_IMPLS = {"reference": _impl_reference, "cpu": cpu.sft_layer}
_T = torch.Tensor
_OT = Optional[torch.Tensor]


@torch.library.custom_op("sft::sft_layer", mutates_args=())
def _op(x: _T, cond: _T, w0_s: _T, b0_s: _OT, w0_t: _T, b0_t: _OT, w1_s: _T, b1_s: _OT, w1_t: _T, b1_t: _OT,
        slope: float, bf16: bool, backend: str) -> torch.Tensor:
    return _IMPLS[backend](x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, slope, bf16)


@_op.register_fake
def _(x, *args):
    return torch.empty_like(x, memory_format=torch.channels_last)


# gradients through the float definition (fine-tuning a converted model computes them as the eager one would)
register_reference_autograd(_op, lambda *a: ref.sft_layer(*a[:11]), tuple(range(10)))

OP = Op("sft_layer", _op, _IMPLS, autotune=False)


def sft_layer(x: torch.Tensor, cond: torch.Tensor, w0_s: torch.Tensor, b0_s: Optional[torch.Tensor],
              w0_t: torch.Tensor, b0_t: Optional[torch.Tensor], w1_s: torch.Tensor, b1_s: Optional[torch.Tensor],
              w1_t: torch.Tensor, b1_t: Optional[torch.Tensor], *, negative_slope: float = 0.1, bf16: bool = False,
              backend: Optional[str] = None) -> torch.Tensor:
    """An SFT layer's output x·(scale + 1) + shift for the conv that reads it (see the module docstring): w0_* the
    first 1×1 convs [C_*, C, 1, 1] (LeakyReLU with negative_slope after them), w1_* the second [K, C_*, 1, 1]."""
    tensors = (x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t)

    def check():
        checks.tensor(x, "x", 4)
        checks.tensor(cond, "cond", 4, like=x)
        if cond.shape[0] != x.shape[0] or cond.shape[2:] != x.shape[2:]:
            raise ValueError(f"cond must have x's batch and spatial size {(x.shape[0], *x.shape[2:])}, got "
                             f"{(cond.shape[0], *cond.shape[2:])}")
        for name, w, b, k, c in (("w0_s", w0_s, b0_s, None, cond.shape[1]), ("w0_t", w0_t, b0_t, None, cond.shape[1]),
                                 ("w1_s", w1_s, b1_s, x.shape[1], None), ("w1_t", w1_t, b1_t, x.shape[1], None)):
            checks.tensor(w, name, 4, like=x)
            c = c if c is not None else (w0_s if name == "w1_s" else w0_t).shape[0]
            k = k if k is not None else w.shape[0]
            if tuple(w.shape) != (k, c, 1, 1):
                raise ValueError(f"{name} must be a 1×1 conv weight of shape {(k, c, 1, 1)}, got {tuple(w.shape)}")
            if b is not None:
                checks.tensor(b, f"{name} bias", 1, like=x)
                if b.shape[0] != k:
                    raise ValueError(f"{name} bias must have {k} elements, got {b.shape[0]}")
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
        if not isinstance(bf16, bool):
            raise TypeError(f"bf16 must be a bool, got {bf16!r}")
        return float(negative_slope), bf16

    sig = None
    if eager_signature_ok(*tensors) and type(negative_slope) in (int, float) and type(bf16) is bool:
        sig = (tuple(meta(t) for t in tensors), negative_slope, bf16)
    return dispatch(OP, backend, tensors, sig, check, x)
