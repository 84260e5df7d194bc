"""sft.qsft_layer: a whole int8 SFT layer feeding an int8 conv, as one op.

    mid_s = quantize(act(qconv2d(cond; w0_s 1×1)), s_input)     mid_t likewise (w0_t, t_input)
    out = qsft_modulation(x, mid_s; w1_s, mid_t; w1_t, out_scale, out_zero_point)     (uint8, channels_last)

x: the float32 feature map the layer modulates [N, K, H, W]; cond: the uint8 condition map [N, C, H, W] with its
(scale, zero point) `cond_input`; first_s / first_t: the first convs (int8 [Cs, C, 1, 1] / [Ct, C, 1, 1], per-channel
scales, float32 bias or None), whose outputs are requantized with the second convs' input parameters s_input /
t_input; second_s / second_t: the second convs (int8 [K, Cs, 1, 1] / [K, Ct, 1, 1], scales, bias); (out_scale,
out_zero_point): the input parameters of the int8 conv that reads the result.

On the cpu each work item (up to 224 pixels) runs the first convs' tiles into per-thread uint8 buffers and the second
convs' pair tiles (ops.qsft_modulation) read them from L1: one call instead of three, and the two mid maps are never
written to memory. The bytes equal the unfused sequence's (`sft.qconv2d` twice with uint8 outputs, then
`sft.qsft_modulation`). `reference.py` computes it in float64 from the integer reference; `cpu.py` launches it.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...runtime import checks, registry
from ...runtime.dispatch import Op, dispatch, eager_signature_ok, meta
from ..qsft_modulation import check_scales_and_bias
from . import cpu
from . import reference as ref

registry.register_op("qsft_layer", {"reference": (torch.float32,), "cpu": (torch.float32,)})


def _impl_reference(x, cond, w0_s, ws0_s, b0_s, w1_s, ws1_s, b1_s, w0_t, ws0_t, b0_t, w1_t, ws1_t, b1_t, c_scale,
                    c_zp, s_scale, s_zp, t_scale, t_zp, activation, slope, out_scale, out_zp):
    y = ref.qsft_layer(x, cond, (c_scale, c_zp), (w0_s, ws0_s, b0_s), (w0_t, ws0_t, b0_t), (w1_s, ws1_s, b1_s),
                       (w1_t, ws1_t, b1_t), (s_scale, s_zp), (t_scale, t_zp), activation, slope, out_scale, out_zp)
    return y.contiguous(memory_format=torch.channels_last)


_IMPLS = {"reference": _impl_reference, "cpu": cpu.qsft_layer}
_T = torch.Tensor
_OT = Optional[torch.Tensor]


@torch.library.custom_op("sft::qsft_layer", mutates_args=())
def _op(x: _T, cond: _T, w0_s: _T, ws0_s: _T, b0_s: _OT, w1_s: _T, ws1_s: _T, b1_s: _OT, w0_t: _T, ws0_t: _T,
        b0_t: _OT, w1_t: _T, ws1_t: _T, b1_t: _OT, c_scale: float, c_zp: int, s_scale: float, s_zp: int,
        t_scale: float, t_zp: int, activation: Optional[str], slope: float, out_scale: float, out_zp: int,
        backend: str) -> torch.Tensor:
    return _IMPLS[backend](x, cond, w0_s, ws0_s, b0_s, w1_s, ws1_s, b1_s, w0_t, ws0_t, b0_t, w1_t, ws1_t, b1_t,
                           c_scale, c_zp, s_scale, s_zp, t_scale, t_zp, activation, slope, out_scale, out_zp)


@_op.register_fake
def _(x, cond, *args):
    return x.new_empty(x.shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)


OP = Op("qsft_layer", _op, _IMPLS, autotune=False)


def _check_conv(name, conv, k, c) -> tuple:
    """(weight, scales, bias) of a k-output 1×1 conv reading c channels, checked."""
    if not isinstance(conv, tuple) or len(conv) != 3:
        raise TypeError(f"{name} must be a (int8 weight, weight_scale, bias or None) tuple, got {type(conv).__name__}")
    w, ws, b = conv
    checks.tensor(w, f"{name} weight", 4, dtypes=(torch.int8,))
    if k is None:
        k = w.shape[0]
    if tuple(w.shape) != (k, c, 1, 1):
        raise ValueError(f"{name} must be a 1×1 conv from {c} to {k} channels: weight shape {(k, c, 1, 1)}, got "
                         f"{tuple(w.shape)}")
    check_scales_and_bias(name, ws, b, k)
    return w, ws, b


def qsft_layer(x: torch.Tensor, cond: torch.Tensor, first_s: tuple, second_s: tuple, first_t: tuple,
               second_t: tuple, *, cond_input: tuple, s_input: tuple, t_input: tuple,
               activation: Optional[str] = "leaky_relu", negative_slope: float = 0.1, out_scale: float,
               out_zero_point: int, backend: Optional[str] = None) -> torch.Tensor:
    """uint8 quantize(x·(scale + 1) + shift) of a whole int8 SFT layer for the int8 conv that reads it (see the module
    docstring). first_* / second_*: (int8 weight, weight_scale, bias or None) of the layer's 1×1 convs; cond_input,
    s_input, t_input: (scale, zero point) of cond and of the two mid maps; activation / negative_slope: the first
    convs' (SFTGAN: leaky_relu, 0.1)."""
    tensors = (x, cond, *(first_s if isinstance(first_s, tuple) else ()),
               *(second_s if isinstance(second_s, tuple) else ()), *(first_t if isinstance(first_t, tuple) else ()),
               *(second_t if isinstance(second_t, tuple) else ()))

    def check():
        checks.tensor(x, "x", 4, dtypes=(torch.float32,))
        checks.tensor(cond, "cond", 4, dtypes=(torch.uint8,))
        if cond.shape[0] != x.shape[0] or cond.shape[2:] != x.shape[2:]:
            raise ValueError(f"cond must have x's batch and spatial size {(x.shape[0], *x.shape[2:])}, got "
                             f"{(cond.shape[0], *cond.shape[2:])}")
        c, k = cond.shape[1], x.shape[1]
        f_s = _check_conv("first_s", first_s, None, c)
        f_t = _check_conv("first_t", first_t, None, c)
        _check_conv("second_s", second_s, k, f_s[0].shape[0])
        _check_conv("second_t", second_t, k, f_t[0].shape[0])
        for t in tensors[1:]:
            if t is not None and t.device != x.device:
                raise ValueError(f"every tensor must be on x's device {x.device}, got one on {t.device}")
        if activation not in checks.ACTIVATIONS:
            raise ValueError(f"activation must be one of {checks.ACTIVATIONS}, got {activation!r}")
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise TypeError(f"negative_slope must be a number, got {negative_slope!r}")
        pair = checks.uint8_affine_pair
        return (*pair("cond_input", cond_input), *pair("s_input", s_input), *pair("t_input", t_input),
                activation, float(negative_slope), *checks.uint8_affine("output", out_scale, out_zero_point))

    if len(tensors) != 14:
        check()  # a conv that is not a 3-tuple: the check says which
    sig = None
    if (eager_signature_ok(*tensors) and type(cond_input) is tuple and type(s_input) is tuple
            and type(t_input) is tuple and all(type(v) in (int, float) for v in (
                *cond_input, *s_input, *t_input, out_scale, out_zero_point, negative_slope))):
        # the convs' strides do not matter (they are packed); their shapes, dtypes and devices do
        sig = (meta(x), meta(cond), tuple(None if t is None else (t.shape, t.dtype, t.is_cpu) for t in tensors[2:]),
               cond_input, s_input, t_input, activation, negative_slope, out_scale, out_zero_point)
    return dispatch(OP, backend, tensors, sig, check, x)
