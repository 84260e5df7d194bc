"""The `cpu` backend of sft.qsft_layer: csrc/cpu/qconv2d/qsft_modulation.cpp (qsft_layer_cpu), on the int8 conv's
tiles and packed weights (the same cache entries as sft.qconv2d's)."""
from __future__ import annotations

import torch

from ...runtime import checks, registry
from ..qconv2d import cpu as qcpu


def _packed(w, ws, b):
    return (*qcpu.split_packed(w, w.shape[0]), ws, b)


def qsft_layer(x, cond, w0_s, ws0_s, b0_s, w1_s, ws1_s, b1_s, w0_t, ws0_t, b0_t, w1_t, ws1_t, b1_t, c_scale, c_zp,
               s_scale, s_zp, t_scale, t_zp, activation, slope, out_scale, out_zp):
    registry.cpu_ext()
    return torch.ops.sft_cpu.qsft_layer.default(
        x, cond, c_scale, c_zp, checks.ACTIVATIONS.index(activation), slope, *_packed(w0_s, ws0_s, b0_s), s_scale,
        s_zp, *_packed(w1_s, ws1_s, b1_s), *_packed(w0_t, ws0_t, b0_t), t_scale, t_zp, *_packed(w1_t, ws1_t, b1_t),
        out_scale, out_zp)
