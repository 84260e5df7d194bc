"""sft.qsft_modulation: an int8 SFT layer feeding an int8 conv, as one op.

    scale = qconv2d(mid_s; w_s 1×1) and shift = qconv2d(mid_t; w_t 1×1), float32 outputs
    out = clamp(round((x·(scale + 1) + shift) / out_scale) + out_zero_point, 0, 255)   (uint8, channels_last)

x: the float32 feature map the layer modulates [N, K, H, W]; mid_s, mid_t: uint8 maps [N, C, H, W] (the layer's first
convs' outputs) with their (scale, zero point); w_s, w_t: int8 [K, C, 1, 1] with per-channel scales and float32
biases; (out_scale, out_zero_point): the input parameters of the int8 conv that reads the result. On the cpu the
two 1×1 convs run tile by tile and the modulation reads their outputs from L1, so the float scale and shift maps are
never written (SFTNet's trunk: 20 MB of float traffic per layer become 6); the bytes equal the unfused sequence's
(`sft.qconv2d` float outputs, then `sft.qconv2d(x, modulation=(scale, shift))` quantizing its input).
`reference.py` computes it in float64 from the integer reference; `cpu.py` launches the kernel.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.dispatch import PLAIN, Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("qsft_modulation", {"reference": (torch.float32,), "cpu": (torch.float32,)})


def _impl_reference(x, mid_s, w_s, ws_s, b_s, mid_t, w_t, ws_t, b_t, s_scale, s_zp, t_scale, t_zp, out_scale,
                    out_zp):
    y = ref.qsft_modulation(x, mid_s, s_scale, s_zp, w_s, ws_s, b_s, mid_t, t_scale, t_zp, w_t, ws_t, b_t, out_scale,
                            out_zp)
    return y.contiguous(memory_format=torch.channels_last)


_IMPLS = {"reference": _impl_reference, "cpu": cpu.qsft_modulation}


@torch.library.custom_op("sft::qsft_modulation", mutates_args=())
def _op(x: torch.Tensor, mid_s: torch.Tensor, w_s: torch.Tensor, ws_s: torch.Tensor, b_s: Optional[torch.Tensor],
        mid_t: torch.Tensor, w_t: torch.Tensor, ws_t: torch.Tensor, b_t: Optional[torch.Tensor], s_scale: float,
        s_zp: int, t_scale: float, t_zp: int, out_scale: float, out_zp: int, backend: str) -> torch.Tensor:
    return _IMPLS[backend](x, mid_s, w_s, ws_s, b_s, mid_t, w_t, ws_t, b_t, s_scale, s_zp, t_scale, t_zp, out_scale,
                           out_zp)


@_op.register_fake
def _(x, mid_s, w_s, ws_s, b_s, mid_t, w_t, ws_t, b_t, s_scale, s_zp, t_scale, t_zp, out_scale, out_zp, backend):
    return x.new_empty(x.shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)


OP = Op("qsft_modulation", _op, _IMPLS, autotune=False)


def _check_branch(name, mid, w, ws, b, scale, zp, x) -> tuple:
    checks.tensor(mid, name, 4, dtypes=(torch.uint8,))
    checks.tensor(w, f"{name} weight", 4, dtypes=(torch.int8,))
    k = x.shape[1]
    if tuple(w.shape) != (k, mid.shape[1], 1, 1):
        raise ValueError(f"the {name} conv must be 1×1 from {mid.shape[1]} to x's {k} channels: weight shape "
                         f"{(k, mid.shape[1], 1, 1)}, got {tuple(w.shape)}")
    if mid.shape[0] != x.shape[0] or mid.shape[2:] != x.shape[2:]:
        raise ValueError(f"{name} must have x's batch and spatial size {(x.shape[0], *x.shape[2:])}, got "
                         f"{(mid.shape[0], *mid.shape[2:])}")
    check_scales_and_bias(name, ws, b, k)
    return checks.uint8_affine(f"{name} input", scale, zp)


def check_scales_and_bias(name, ws, b, k) -> None:
    """An int8 1×1 conv's k positive float32 per-channel scales and its float32 bias of k values (or None)."""
    checks.tensor(ws, f"{name} weight_scale", 1, dtypes=(torch.float32,))
    if ws.shape[0] != k or not (torch.compiler.is_compiling() or bool((ws > 0).all())):
        raise ValueError(f"{name} weight_scale must hold {k} positive per-channel scales, got shape {tuple(ws.shape)}")
    if b is not None:
        checks.tensor(b, f"{name} bias", 1, dtypes=(torch.float32,))
        if b.shape[0] != k:
            raise ValueError(f"{name} bias must have {k} elements, got {b.shape[0]}")


def qsft_modulation(x: torch.Tensor, mid_s: torch.Tensor, w_s: torch.Tensor, ws_s: torch.Tensor,
                    b_s: Optional[torch.Tensor], mid_t: torch.Tensor, w_t: torch.Tensor, ws_t: torch.Tensor,
                    b_t: Optional[torch.Tensor], *, s_input: tuple, t_input: tuple, out_scale: float,
                    out_zero_point: int, backend: Optional[str] = None) -> torch.Tensor:
    """uint8 quantize(x·(scale + 1) + shift) for the int8 conv that reads an SFT layer (see the module docstring).
    s_input / t_input: (scale, zero point) of mid_s / mid_t; out_scale, out_zero_point: the reading conv's input
    parameters."""
    tensors = (x, mid_s, w_s, ws_s, b_s, mid_t, w_t, ws_t, b_t)

    def check():
        checks.tensor(x, "x", 4, dtypes=(torch.float32,))
        for t in tensors[1:]:
            if t is not None and isinstance(t, torch.Tensor) and t.device != x.device:
                raise ValueError(f"every tensor must be on x's device {x.device}, got one on {t.device}")
        if not isinstance(s_input, tuple) or not isinstance(t_input, tuple) or len(s_input) != 2 or len(t_input) != 2:
            raise TypeError("s_input and t_input must be (scale, zero_point) tuples")
        s = _check_branch("mid_s", mid_s, w_s, ws_s, b_s, *s_input, x)
        t = _check_branch("mid_t", mid_t, w_t, ws_t, b_t, *t_input, x)
        return (*s, *t, *checks.uint8_affine("output", out_scale, out_zero_point))

    sig = None
    if (all(t is None or type(t) in PLAIN for t in tensors) and not torch.compiler.is_compiling()
            and type(s_input) is tuple and type(t_input) is tuple
            and all(type(v) in (int, float) for v in (*s_input, *t_input, out_scale, out_zero_point))):
        sig = (tuple(None if t is None else (t.shape, t.stride(), t.dtype, t.device) for t in tensors), s_input,
               t_input, out_scale, out_zero_point)
    return dispatch(OP, backend, tensors, sig, check, x)
