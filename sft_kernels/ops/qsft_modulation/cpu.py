"""The `cpu` backend of sft.qsft_modulation: csrc/cpu/qconv2d/qsft_modulation.cpp, on the int8 conv's tiles and its
packed weights (the same cache entry as sft.qconv2d's, so a model's two 1×1 convs are packed once)."""
from __future__ import annotations

import torch

from ...runtime import registry
from ..qconv2d import cpu as qcpu


def _packed(w):
    return qcpu.split_packed(w, w.shape[0])


def qsft_modulation(x, mid_s, w_s, ws_s, b_s, mid_t, w_t, ws_t, b_t, s_scale, s_zp, t_scale, t_zp, out_scale,
                    out_zp):
    registry.cpu_ext()
    ps, ss = _packed(w_s)
    pt, st = _packed(w_t)
    return torch.ops.sft_cpu.qsft_modulation.default(x, mid_s, s_scale, s_zp, ps, ss, ws_s, b_s, mid_t, t_scale, t_zp,
                                                     pt, st, ws_t, b_t, out_scale, out_zp)
