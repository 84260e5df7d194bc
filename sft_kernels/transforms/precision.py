"""convert_'s ``fp32_precision``: which converted convs compute in bfloat16 (ops.conv2d's algorithm="bf16": input and
weight rounded to bfloat16, float32 sums on AMX tiles or AVX512-BF16 vectors, float32 in and out; on vectors 3×3
stride-1 convs may also run "bf16_winograd", whichever measures fastest), and why the others stay float32.

The name and values follow PyTorch's ``torch.backends.mkldnn.conv.fp32_precision`` ("ieee" or "bf16"), plus
"bf16_direct": bf16 without Winograd, the numerics of oneDNN's and OpenVINO's bf16 (bf16 Winograd rounds the
transformed tiles too: ~2-5x the direct bf16 conv's error on trained SR weights, more on random ones). Parameters,
state_dict and the tensors between layers stay float32; only the convs' multiplies change precision.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from ..nn import Conv2d
from ..nn.conv import BF16_DIRECT_OR_FP32, BF16_OR_FP32, MEASURED, measured_on_vectors
from ..nn.folded_conv import FoldedConv2d
from ..ops.conv2d.cpu import bf16_unit
from .report import Report

PRECISIONS = ("ieee", "bf16", "bf16_direct")

# Multiply-adds per output pixel (R·S·C·K) at or under which a conv stays float32: it is memory-bound, and the bf16
# copy of its input costs more than the tiles save. Measured against our float32 conv (op, 1 thread, Xeon SPR, at
# 128²): 32→32 1×1 0.88×, 64→4 1×1 0.84×; above it 96→24 1×1 at 56² 1.20×, 64→3 3×3 at 512² 1.40×.
_MEMORY_BOUND_MACS = 1024

# On AVX512-BF16 vectors (no AMX: AMD Zen 4), where one vdpbf16ps does 2x the multiply-adds of a float32 FMA: below
# this many input channels the 32-channel rows are mostly padding (8→128 4x4 stride 4: 0.55x our float32).
_VECTORS_MIN_CHANNELS = 16


def bf16_skip_reason(conv: nn.Conv2d, unit: str = "amx") -> Optional[str]:
    """Why `conv` keeps float32 under fp32_precision="bf16" on `unit` ("amx" or "vectors", as ops.conv2d.cpu.bf16_unit
    says; None: it computes in bfloat16)."""
    if type(conv) not in (Conv2d, FoldedConv2d):
        return f"{type(conv).__name__} has no bf16 kernel"
    if getattr(conv, "backend", None) not in (None, "cpu") or not conv.weight.is_cpu \
            or conv.weight.dtype != torch.float32:
        return "bf16 is the cpu backend's, for float32 weights on the cpu"
    if conv.groups != 1:
        return "grouped / depthwise conv (float32 kernels; memory-bound)"
    c, k = conv.in_channels, conv.out_channels
    r, s = conv.kernel_size
    if c < 8:
        return f"{c} input channels: the bf16 tile rows (32 channels) would be mostly padding (3→64 3x3: 0.79x)"
    if r * s * c * k <= _MEMORY_BOUND_MACS:
        return f"{r * s * c * k} multiply-adds per pixel: memory-bound, the bf16 input copy costs more than it saves"
    if unit == "vectors" and c < _VECTORS_MIN_CHANNELS:
        return f"{c} input channels: on AVX512-BF16 vectors the 32-channel rows would be mostly padding"
    return None


def set_fp32_precision(model: nn.Module, precision: str, report: Report) -> None:
    """Sets every converted conv's algorithm for `precision` ("bf16": where `bf16_skip_reason` allows; "ieee": back
    to float32), with one report row per conv under "bf16"."""
    if precision not in PRECISIONS:
        raise ValueError(f"fp32_precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "ieee":
        for m in model.modules():
            if isinstance(m, Conv2d) and m.algorithm in ("bf16", "bf16_winograd", *MEASURED):
                m.algorithm = None
        return
    winograd = precision == "bf16"
    unit = bf16_unit()
    if unit == "none":
        warnings.warn("fp32_precision='bf16' needs a CPU with AMX-BF16 (Intel Xeon Sapphire Rapids or later) or "
                      "AVX512-BF16 (AMD Zen 4, Intel Cooper Lake) and the cpu extension's AVX-512 kernels; the model "
                      "stays float32 (sft_kernels.backends.bf16_available() says whether this machine has them)",
                      stacklevel=3)
        report.add("", "float32", "fp32_precision='bf16': neither AMX-BF16 nor AVX512-BF16 here")
        return
    # Models whose forward runs some convs together or inside other ops say how those run (SFTNet's SFT layers).
    planned = {}
    for name, m in model.named_modules():
        hook = getattr(m, "_sft_kernels_bf16_plan", None)
        if callable(hook):
            planned.update({f"{name}.{k}" if name else k: v for k, v in hook().items()})
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or not hasattr(m, "algorithm"):
            continue
        if name in planned and type(m) in (Conv2d, FoldedConv2d):
            plan, why = planned[name]  # True: "bf16", False: float32, or the algorithm itself
            if plan == "bf16_winograd" and not winograd:
                plan, why = False, "3x3 stride 1 on AVX512-BF16 vectors, bf16_direct: our float32 Winograd is faster"
            m.algorithm = "bf16" if plan is True else (plan or None)
            report.add(name, "float32" if m.algorithm is None else m.algorithm, why)
            continue
        why = bf16_skip_reason(m, unit)
        if why is None and unit == "vectors" and measured_on_vectors(m):
            m.algorithm = BF16_OR_FP32 if winograd else BF16_DIRECT_OR_FP32
            report.add(name, "measured", f"3x3 stride 1 on AVX512-BF16 vectors: bf16, {'bf16 Winograd, ' * winograd}"
                       "or float32, whichever measures fastest at the first call of each input shape")
        elif why is None:
            m.algorithm = "bf16"
            report.add(name, "bf16", "input and weight rounded to bfloat16, float32 sums")
        else:
            report.add(name, "float32", why)
