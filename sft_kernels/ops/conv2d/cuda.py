"""The `cuda` backend of sft.conv2d: lays tensors out for the hand-written tensor-core kernel
(csrc/cuda/conv2d/conv2d.cu, bound as `torch.ops.sft_cuda.conv2d_nhwc`) and calls it.

The kernel wants an NHWC input, a KRSC weight and a multiple of 8 channels per group (16-byte cp.async
chunks). A channels_last input is already NHWC (no copy); NCHW input is transposed once, as cuDNN does.
Odd channel counts (e.g. the 3-channel first conv) are zero-padded to a multiple of 8; the packed weight is
cached for the weight tensor's lifetime by `weight_pack` (repacked when it changes, and packed inside a CUDA
graph capture so a replay never reads a pack that was freed or is stale).

Tile configs: `tile_configs()` lists them; SFT_KERNELS_CUDA_CONFIG=<name> pins one, otherwise the kernel's
size heuristic picks; SFT_KERNELS_LOG_CONFIG=1 prints the choice per launch.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ...runtime import checks as _checks
from ...runtime import registry, weight_pack



def cuda_op(name: str):
    """torch.ops.sft_cuda.<name> (a kernel of the CUDA extension), or BackendUnavailableError saying why the cuda
    backend cannot run: the extension may be built but have no GPU to run on."""
    ok, why = registry.status()["cuda"]
    if not ok:
        raise registry.BackendUnavailableError(f"cuda backend unavailable: {why}")
    return getattr(torch.ops.sft_cuda, name)


def _kernel():
    return cuda_op("conv2d_nhwc")


def tile_configs(kernel: str = "conv2d") -> list:
    """[(name, (BM, BN, BK, WM, WN, STAGES))] of a tensor-core kernel's tile configs, in its index order: "conv2d"
    (this op's, which the block-sparse conv shares), "qconv2d" or "sparse24". Needs the CUDA extension, not a GPU."""
    if registry.cuda_ext() is None:
        raise registry.BackendUnavailableError(f"cuda backend unavailable: {registry.status()['cuda'][1]}")
    listed = getattr(torch.ops.sft_cuda, "tile_configs" if kernel == "conv2d" else f"{kernel}_tile_configs")()
    return [(name, tuple(int(v) for v in dims.split(","))) for name, dims in (c.split(":") for c in listed)]


def pinned_config(env: str, kernel: str = "conv2d") -> int:
    """The index of the tile config named by environment variable `env`, or -1 (the kernel's heuristic) if unset."""
    pinned = os.environ.get(env)
    if not pinned:
        return -1
    names = [name for name, _ in tile_configs(kernel)]
    if pinned not in names:
        raise ValueError(f"{env}={pinned!r} is not a {kernel} CUDA tile config; choose one of {names}")
    return names.index(pinned)


def _config_index(n: int, p: int, q: int, k: int, groups: int) -> int:
    index = pinned_config("SFT_KERNELS_CUDA_CONFIG")
    if os.environ.get("SFT_KERNELS_LOG_CONFIG") != "1":
        return index
    if index < 0:
        index = int(torch.ops.sft_cuda.choose_tile_config(n, p, q, k, groups))
    name = tile_configs()[index][0]
    print(f"sft_kernels cuda conv2d M={n * p * q} Kg={k // groups}: {name}", file=sys.stderr)
    return index


def _pad_groups(t: torch.Tensor, groups: int, cg: int, cg8: int) -> torch.Tensor:
    """Zero-pad the last dim (groups × cg channels) to groups × cg8."""
    if cg8 == cg:
        return t.contiguous()
    lead = t.shape[:-1]
    return F.pad(t.reshape(*lead, groups, cg), (0, cg8 - cg)).reshape(*lead, groups * cg8).contiguous()


def _pack_weight(w: torch.Tensor, groups: int, cg8: int) -> torch.Tensor:
    """KRSC weight with channels padded to cg8 (see weight_pack for its lifetime)."""
    return weight_pack.packed(w, f"cuda_krsc_{cg8}", lambda w: _pad_groups(w.permute(0, 2, 3, 1), 1, w.shape[1], cg8))


def conv2d(x, w, b, stride, padding, dilation, groups, activation, negative_slope, residual, pixel_shuffle: int = 1,
           kernel: Optional[Callable] = None) -> torch.Tensor:
    """sft.conv2d on the CUDA kernel (fp16/bf16); `kernel` replaces torch.ops.sft_cuda.conv2d_nhwc (tests). SFT
    modulation is of the conv's input: callers apply it to x first."""
    kernel = kernel or _kernel()
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    cg8 = -(-cg // 8) * 8
    xh = _pad_groups(x.permute(0, 2, 3, 1), groups, cg, cg8)  # no copy for channels_last input, C % 8 == 0
    wh = _pack_weight(w, groups, cg8)
    p, q = _checks.conv_output_hw(h, wd, kh, kw, stride, padding, dilation)

    def nhwc(t):
        return None if t is None else t.permute(0, 2, 3, 1).contiguous()

    config = _config_index(n, p, q, k, groups)
    y = kernel(xh, wh, b if b is None else b.contiguous(), list(stride), list(padding), list(dilation), groups,
               _checks.ACTIVATIONS.index(activation), float(negative_slope), nhwc(residual), pixel_shuffle, config)
    return y.permute(0, 3, 1, 2).contiguous(memory_format=_checks.output_memory_format(x))
