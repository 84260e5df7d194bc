"""The `cpu` backend of sft.qconv2d: the extension's int8 direct conv (csrc/cpu/qconv2d/: AMX tiles, AVX-512 VNNI,
AVX2, a portable loop; `kernel()` says which runs). The weights are packed once per weight tensor (with their
per-channel sums, which carry the input zero point) and held as long as the weight lives (runtime.weight_pack).
Grouped convs go to the reference."""
from __future__ import annotations

import torch

from ...runtime import checks, registry, weight_pack


def kernel() -> str:
    """"amx", "vnni", "avx2" or "generic": the integer kernel this process runs (SFT_KERNELS_INT8 forces one)."""
    registry.cpu_ext()
    return torch.ops.sft_cpu.qconv2d_kernel()


def _pack(w_q):
    packed, wsum = torch.ops.sft_cpu.qconv2d_pack(w_q)
    return torch.cat([packed.view(torch.uint8), wsum.view(torch.uint8)])  # one tensor: weight_pack keeps tensors


def qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp, ms=None,
            mt=None):
    registry.cpu_ext()
    k, _, r, s = w.shape
    both = weight_pack.packed(w, "cpu_qconv2d", _pack)
    n_packed = both.numel() - -(-k // 32) * 32 * 4  # the int32 sums of whole 32-channel panels come last
    packed = both[:n_packed].view(torch.int8)
    wsum = both[n_packed:].view(torch.int32)
    y = torch.ops.sft_cpu.qconv2d.default(x, x_scale, x_zp, packed, wsum, ws, b, r, s, stride, padding, dilation,
                                          checks.ACTIVATIONS.index(act), slope, res, o_scale, o_zp, ms, mt)
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()
