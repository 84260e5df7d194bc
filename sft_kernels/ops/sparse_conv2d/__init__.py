"""sft.sparse_conv2d: a conv whose time falls with the weights kept.

    y = act(conv(x·(scale + 1) + shift, w) + bias) [-> PixelShuffle(r)] + residual

w is a float32 conv weight with zeros (a pruned, masked weight). The `cpu` backend runs only its nonzeros: packed
once per weight (their (c, r, s) taps, blocked by 1 or 4 output channels; an unstructured 3×3 weight's nonzeros
also grouped by (filter, channel, column), so the taps of one column load the input rows they share once), each
call transposing the input rows into a small ring and running tiles of 8 rows × 16 pixels that do one vector FMA
per nonzero and pixel vector (csrc/cpu/sparse_conv2d/tiles.h). Blocks of 4 output channels share their input loads,
so a weight pruned in such blocks (PruneConfig(pattern="block")) runs faster than an unstructured one at the same
sparsity from ~70 % on. The result equals the dense conv of w (the reference) to float32 rounding.

The op (schema `sft::sparse_conv2d`, fake kernel, registry entry), its checks and its public function;
`reference.py` holds the dense reference, `cpu.py` the cpu launcher, `triton.py` the block-sparse Triton kernel (its
K loop visits only the weight blocks with a nonzero; configs/triton.json), `cuda.py` the tensor-core CUDA kernel
with block lists.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ...runtime import checks, registry, weight_pack
from ...runtime import triton as runtime_triton
from ...runtime.dispatch import PLAIN, Op, dispatch
from . import cpu
from . import reference as ref

registry.register_op("sparse_conv2d", {"reference": registry.FLOATS, "cpu": (torch.float32,),
                                       "triton": (torch.float32, torch.float16, torch.bfloat16),
                                       "cuda": (torch.float16, torch.bfloat16)})


def _impl_reference(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, shuffle):
    mod = None if ms is None else (ms, mt)
    y = ref.sparse_conv2d(x, weight_pack.like_input(w, x), b, stride, padding, dilation, groups, act, slope, res,
                          mod, shuffle)
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _impl_cpu(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, shuffle):
    return cpu.sparse_conv2d(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, shuffle)


def _shuffled(impl):
    """A GPU kernel without a shuffling store: its conv, then PixelShuffle, then the residual."""
    def run(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, shuffle):
        if shuffle == 1:
            return impl(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block)
        y = F.pixel_shuffle(impl(x, w, b, None, ms, mt, stride, padding, dilation, groups, act, slope, block),
                            shuffle).contiguous(memory_format=checks.output_memory_format(x))
        return y if res is None else y + res
    return run


def _impl_triton(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block):
    if groups != 1:  # the Triton kernel is ungrouped: the reference takes grouped convs
        return _impl_reference(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block, 1)
    if ms is not None:  # modulate first: the kernel reads the conv's input as it is
        x = x * (ms + 1) + mt
    return runtime_triton.load("sft_kernels.ops.sparse_conv2d.triton").sparse_conv2d(
        x, w, b, res, tuple(stride), tuple(padding), tuple(dilation), act, slope)


def _impl_cuda(x, w, b, res, ms, mt, stride, padding, dilation, groups, act, slope, block):
    from . import cuda

    if ms is not None:  # the modulation is of the conv's input: apply it first, as sft.conv2d's cuda backend does
        x = x * (ms + 1) + mt
    return cuda.sparse_conv2d(x, w, b, res, stride, padding, dilation, groups, act, slope)


_IMPLS = {"reference": _impl_reference, "cpu": _impl_cpu, "triton": _shuffled(_impl_triton),
          "cuda": _shuffled(_impl_cuda)}


@torch.library.custom_op("sft::sparse_conv2d", mutates_args=())
def _sparse_conv2d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                      residual: Optional[torch.Tensor], mod_scale: Optional[torch.Tensor],
                      mod_shift: Optional[torch.Tensor], stride: list[int], padding: list[int], dilation: list[int],
                      groups: int, activation: Optional[str], negative_slope: float, block: Optional[int],
                      pixel_shuffle: int, backend: str) -> torch.Tensor:
    return _IMPLS[backend](input, weight, bias, residual, mod_scale, mod_shift, stride, padding, dilation, groups,
                           activation, negative_slope, block, pixel_shuffle)


@_sparse_conv2d_op.register_fake
def _(input, weight, bias, residual, mod_scale, mod_shift, stride, padding, dilation, groups, activation,
      negative_slope, block, pixel_shuffle, backend):
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], weight.shape[2], weight.shape[3], stride, padding,
                                 dilation)
    r = pixel_shuffle
    out = input.new_empty((input.shape[0], weight.shape[0] // (r * r), p * r, q * r))
    return out.contiguous(memory_format=checks.output_memory_format(input))


OP = Op("sparse_conv2d", _sparse_conv2d_op, _IMPLS, autotune=False)  # the reference is the dense conv: never timed


def _check(input, weight, bias, residual, stride, padding, dilation, groups, activation, negative_slope, ms, mt,
           block, pixel_shuffle) -> tuple:
    stride, padding, dilation, (p, q) = checks.conv_args(input, weight, bias, stride, padding, dilation, groups)
    r = checks.pixel_shuffle(pixel_shuffle, weight.shape[0])
    checks.residual(residual, "residual", (input.shape[0], weight.shape[0] // (r * r), p * r, q * r), input)
    checks.activation(activation)
    for name, t in (("modulation scale", ms), ("modulation shift", mt)):
        if t is not None:
            checks.tensor(t, name, 4, like=input)
            if t.shape != input.shape:
                raise ValueError(f"modulation=(scale, shift) maps must be shaped like the input {tuple(input.shape)}, "
                                 f"got {name} {tuple(t.shape)}")
    if block not in cpu.BLOCKS:
        raise ValueError(f"block must be None (decide from the weight), 1 (unstructured) or 4 (blocks of 4 output "
                         f"channels), got {block!r}")
    return stride, padding, dilation, groups, activation, float(negative_slope), block, r


def sparse_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                  activation: Optional[str] = None, negative_slope: float = 0.01,
                  residual: Optional[torch.Tensor] = None, modulation: Optional[tuple] = None,
                  block: Optional[int] = None, pixel_shuffle: int = 1,
                  backend: Optional[str] = None) -> torch.Tensor:
    """F.conv2d(input, weight, ...) with the fused epilogue (see the module docstring), running only the nonzeros
    of `weight` on the cpu backend. `block`: how the kernel groups output channels, None to decide from the weight
    (4 where its zeros are shared by aligned groups of 4 channels), 1 or 4 to force. ``modulation=(scale, shift)``
    convolves input·(scale + 1) + shift. ``pixel_shuffle=r`` writes PixelShuffle(r) of the activated conv (the
    residual shaped like that, added after), as sft.conv2d does; the cpu kernel stores it directly. No autograd:
    train the masked dense conv (nn.SparseConv2d does)."""
    if modulation is not None and not (isinstance(modulation, tuple) and len(modulation) == 2):
        raise TypeError("modulation must be a (scale, shift) tuple of tensors")
    ms, mt = modulation if modulation is not None else (None, None)
    tensors = (input, weight, bias, residual, ms, mt)
    sig = None
    if (type(input) is torch.Tensor and all(t is None or type(t) in PLAIN for t in tensors)
            and all(type(v) is int or (type(v) is tuple and len(v) == 2 and all(type(e) is int for e in v))
                    for v in (stride, padding, dilation, groups))
            and type(negative_slope) in (int, float) and type(activation) in (str, type(None))
            and (block is None or type(block) is int) and type(pixel_shuffle) is int
            and (backend is None or type(backend) is str) and not torch.compiler.is_compiling()):
        sig = (tuple(None if t is None else (t.shape, t.dtype, t.is_cpu) for t in tensors), input.stride(), stride,
               padding, dilation, groups, activation, float(negative_slope), block, pixel_shuffle)
    return dispatch(OP, backend, tensors, sig,
                    lambda: _check(input, weight, bias, residual, stride, padding, dilation, groups, activation,
                                   negative_slope, ms, mt, block, pixel_shuffle),
                    input)
