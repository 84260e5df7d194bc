"""The `cpu` backend of sft.conv2d: the C++ extension's op (csrc/cpu/conv2d/), which picks Winograd, direct
implicit GEMM or the taps / rows / thin paths by its own measured rule."""
from __future__ import annotations

import torch

from ...runtime import checks, registry

_ALGORITHM_CODES = {None: 0, "auto": 0, "direct": 1, "winograd": 2, "winograd_f2": 3, "bf16": 4, "bf16_winograd": 5}


def conv2d(x, w, b, res, scale, shift, stride, padding, dilation, groups, act, slope, algorithm, shuffle):
    registry.cpu_ext()  # loads the extension, which registers torch.ops.sft_cpu (the op takes empty batches)
    if scale is not None and x.stride(1) == 1:  # fused into packing when strided like the input
        scale, shift = (t if t.stride() == x.stride() else torch.empty_like(x).copy_(t) for t in (scale, shift))
    return torch.ops.sft_cpu.conv2d.default(x, w, b, stride, padding, dilation, groups,
                                            checks.ACTIVATIONS.index(act), slope, res, _ALGORITHM_CODES[algorithm],
                                            shuffle, scale, shift)


def bind(consts):
    """conv2d specialised to one call signature's non-tensor arguments (dispatch's memo keeps it)."""
    stride, padding, dilation, groups, act, slope, algorithm, shuffle = consts
    act_code, algo_code = checks.ACTIVATIONS.index(act), _ALGORITHM_CODES[algorithm]
    registry.cpu_ext()
    op = torch.ops.sft_cpu.conv2d.default

    def run(x, w, b, res, scale, shift):
        if scale is None:
            return op(x, w, b, stride, padding, dilation, groups, act_code, slope, res, algo_code, shuffle, None, None)
        return conv2d(x, w, b, res, scale, shift, *consts)

    return run


def bf16_available() -> bool:
    """Whether algorithm="bf16" runs here: a CPU with AMX-BF16 tiles (Intel Sapphire Rapids or later) that the OS
    lets this process use, or with AVX512-BF16 vectors (AMD Zen 4, Intel Cooper Lake), and the cpu extension's
    AVX-512 kernels (not SFT_KERNELS_ISA=avx2|generic)."""
    return bf16_unit() != "none"


def bf16_unit() -> str:
    """What runs algorithm="bf16" here: "amx" (tiles), "vectors" (vdpbf16ps) or "none".
    SFT_KERNELS_BF16=amx|vectors, set before the first call, forces one."""
    if registry.cpu_ext() is None:
        return "none"
    return str(torch.ops.sft_cpu.conv2d_bf16_unit())
