"""The `cpu` backend of sft.qconv2d_winograd: the extension's kernel (csrc/cpu/qconv2d/qwinograd.cpp), the 16
positions' weights packed once per weight tensor as 1×1 int8 convs (qconv2d_pack) and held while the weight lives."""
from __future__ import annotations

import torch

from ...runtime import checks, registry, weight_pack
from .reference import POSITIONS


def _pack(u_q):
    k, c = u_q.shape[1:]
    parts = [torch.ops.sft_cpu.qconv2d_pack(u_q[p].reshape(k, c, 1, 1).contiguous()) for p in range(POSITIONS)]
    packed = torch.cat([p[0].reshape(-1) for p in parts])
    wsum = torch.cat([p[1].reshape(-1) for p in parts])
    return torch.cat([packed.view(torch.uint8), wsum.view(torch.uint8)])


def _split(both, k):
    n_sums = POSITIONS * -(-k // 32) * 32 * 4
    return both[:-n_sums].view(torch.int8), both[-n_sums:].view(torch.int32)


def qconv2d_winograd(x, u_q, u_scale, mult, b, res, x_scale, x_zp, act, slope, o_scale, o_zp, shuffle=1,
                     r_scale=0.0, r_zp=0):
    registry.cpu_ext()
    k = u_q.shape[1]
    if shuffle > 1:  # channels in sub-pixel order, shuffled by the kernel after its store
        tag = f"cpu_qconv2d_winograd_sub{shuffle}"
        u_q, u_scale = (weight_pack.sub_pixel(t, k, shuffle, tag, dim=1) for t in (u_q, u_scale))
        b = weight_pack.sub_pixel(b, k, shuffle, tag)
        res = None if res is None else res[:, weight_pack.sub_pixel_order(k, shuffle)]
    packed, wsum = _split(weight_pack.packed(u_q, "cpu_qconv2d_winograd", _pack), k)
    y = torch.ops.sft_cpu.qconv2d_winograd.default(x, x_scale, x_zp, packed, wsum, u_scale, mult, b,
                                                   checks.ACTIVATIONS.index(act), slope, res, o_scale, o_zp, shuffle,
                                                   r_scale, r_zp)
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()
