"""The `cuda` backend of sft.qconv2d: lays tensors out for the int8 tensor-core kernel
(csrc/cuda/qconv2d/qconv2d.cu, bound as `torch.ops.sft_cuda.qconv2d_nhwc`) and calls it.

The kernel wants a uint8 NHWC input (a channels_last one already is), a KRSC int8 weight and a multiple of 16
channels per group (16-byte cp.async chunks): odd channel counts (the 3-channel first conv) are zero-padded, the
padded weights are zero. The packed weight and its per-channel sums Σw (which carry the input zero point) are
made once per weight tensor and held as long as it lives (runtime.weight_pack). Grouped convs run in the kernel
(one grid slice per group). A float input is quantized (and SFT-modulated) by the caller first.

Tile configs: `tile_configs()` lists them; SFT_KERNELS_CUDA_QCONFIG=<name> pins one, otherwise the kernel's size
heuristic picks.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from ...runtime import checks, weight_pack
from ..conv2d import cuda as dense
from ..conv2d.cuda import _pad_groups


def tile_configs() -> list:
    """[(name, (BM, BN, BK, WM, WN, STAGES))] in the kernel's index order (needs the CUDA extension, not a GPU)."""
    return dense.tile_configs("qconv2d")


def channels_per_group(cg: int) -> int:
    """The kernel's channels per group: cg rounded up to 16."""
    return -(-cg // 16) * 16


def pack_weight(w: torch.Tensor) -> tuple:
    """(KRSC int8 weight, each filter's Cg channels padded to 16, Σw per output channel as int32), cached on `w`."""
    cg16 = channels_per_group(w.shape[1])
    wh = weight_pack.packed(w, f"cuda_qkrsc_{cg16}", lambda w: _pad_groups(w.permute(0, 2, 3, 1), 1, w.shape[1], cg16))
    wsum = weight_pack.packed(w, "cuda_qwsum", lambda w: w.to(torch.int32).sum((1, 2, 3)).to(torch.int32))
    return wh, wsum


def qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp,
            o_dtype=None, r_scale=0.0, r_zp=0, kernel: Optional[Callable] = None) -> torch.Tensor:
    """sft.qconv2d on the CUDA kernel, for a uint8 input (o_dtype: int8, bfloat16 or None; r_scale > 0: res is
    uint8 with that scale and zero point r_zp); `kernel` replaces torch.ops.sft_cuda.qconv2d_nhwc (tests)."""
    kernel = kernel or dense.cuda_op("qconv2d_nhwc")
    cg = w.shape[1]
    xh = _pad_groups(x.permute(0, 2, 3, 1), groups, cg, channels_per_group(cg))  # no copy: channels_last, C % 16 = 0
    wh, wsum = pack_weight(w)
    mult = (ws.double() * x_scale).float()
    resh = None if res is None else res.permute(0, 2, 3, 1).contiguous()
    y = kernel(xh, wh, wsum, mult, None if b is None else b.contiguous(), resh, list(stride), list(padding),
               list(dilation), groups, x_zp, checks.ACTIVATIONS.index(act), float(slope), float(o_scale), o_zp,
               dense.pinned_config("SFT_KERNELS_CUDA_QCONFIG", "qconv2d"), o_dtype, float(r_scale), int(r_zp))
    return y.permute(0, 3, 1, 2).contiguous(memory_format=checks.output_memory_format(x))
