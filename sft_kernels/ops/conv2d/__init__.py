"""sft.conv2d: F.conv2d with a fused epilogue  y = act(conv(x, w) + bias) [-> PixelShuffle] + residual.

This file holds the op: its `torch.library` schema (`sft::conv2d`, with a fake kernel and autograd, so it works
under `torch.compile(fullgraph=True)` and passes `torch.library.opcheck`), its registry entry, its argument
checks and its public function. The backends' launchers are `cpu.py`, `triton.py` (kernel and launcher) and
`cuda.py`; the plain-PyTorch definition is `reference.py`. The backward is the reference one (aten
convolution_backward on a recomputed pre-activation): good enough for fine-tuning converted models.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ...runtime import checks, registry, weight_pack
from ...runtime import triton as runtime_triton
from ...runtime.dispatch import PLAIN, Op, dispatch, memo_entry
from . import cpu
from . import reference as ref

ALGORITHMS = (None, "auto", "direct", "winograd", "winograd_f2", "bf16", "bf16_winograd")

registry.register_op("conv2d", {
    "reference": registry.FLOATS,
    "cpu": (torch.float32,),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
    "cuda": (torch.float16, torch.bfloat16),
})


def _no_winograd(backend, algorithm):
    if algorithm in ("winograd", "winograd_f2"):
        raise registry.BackendUnavailableError(
            f"backend {backend!r} has no Winograd conv; only the 'cpu' backend implements algorithm={algorithm!r}")
    if algorithm in ("bf16", "bf16_winograd") and backend != "reference":
        raise registry.BackendUnavailableError(
            f"backend {backend!r} has no algorithm={algorithm!r} (float32 tensors computed in bfloat16); pass it "
            f"bfloat16 tensors instead")


# ---- one implementation per backend: (tensors..., consts...) as dispatch passes them
def _impl_reference(x, w, b, res, scale, shift, stride, padding, dilation, groups, act, slope, algorithm, shuffle):
    _no_winograd("reference", algorithm)
    mod = None if scale is None else (scale, shift)
    w = weight_pack.like_input(w, x)
    if algorithm in ("bf16", "bf16_winograd") and mod is not None:  # the input is modulated before it is rounded
        x, mod = x * (scale + 1) + shift, None
    if algorithm == "bf16_winograd":  # the definition: Winograd F(4×4, 3×3), tiles and filters rounded to bf16
        y = ref.winograd_bf16_conv(x, w, padding)
        y = ref.finish(y if b is None else y + b.view(1, -1, 1, 1), act, slope, res, shuffle)
        return y.contiguous(memory_format=checks.output_memory_format(x))
    if algorithm == "bf16":  # the definition: input and weight rounded to bfloat16, float32 sums
        x, w = ref.bf16_rounded(x), ref.bf16_rounded(w)
    y = ref.conv2d(x, w, b, stride, padding, dilation, groups, act, slope, res, shuffle, mod)
    return y.contiguous(memory_format=checks.output_memory_format(x))


def _impl_triton(x, w, b, res, scale, shift, stride, padding, dilation, groups, act, slope, algorithm, shuffle):
    _no_winograd("triton", algorithm)
    if x.shape[0] == 0:
        return _empty_out(x, w, stride, padding, dilation, shuffle)
    w = weight_pack.packed(w, "triton_rsck", _rsck)
    return runtime_triton.load("sft_kernels.ops.conv2d.triton").conv2d(
        x, w, b, tuple(stride), tuple(padding), tuple(dilation), groups, act, slope, res, pixel_shuffle=shuffle,
        modulation=None if scale is None else (scale, shift))


def _rsck(w):
    """The weight as an RSCK-strided view of shape KCRS: the Triton kernel's B tiles then load contiguous rows."""
    return w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)


def _impl_cuda(x, w, b, res, scale, shift, stride, padding, dilation, groups, act, slope, algorithm, shuffle):
    from . import cuda as cuda_conv

    _no_winograd("cuda", algorithm)
    if x.shape[0] == 0:
        return _empty_out(x, w, stride, padding, dilation, shuffle)
    if scale is not None:  # the CUDA kernel's A tiles go global->shared by cp.async: modulate in one pass first
        x = torch.addcmul(shift, x, scale + 1)
    return cuda_conv.conv2d(x, w, b, stride, padding, dilation, groups, act, slope, res, pixel_shuffle=shuffle)


_IMPLS = {"reference": _impl_reference, "cpu": cpu.conv2d, "triton": _impl_triton, "cuda": _impl_cuda}


# ---- the library op: the same arguments, backend last
@torch.library.custom_op("sft::conv2d", mutates_args=())
def _conv2d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
               residual: Optional[torch.Tensor], scale: Optional[torch.Tensor], shift: Optional[torch.Tensor],
               stride: list[int], padding: list[int], dilation: list[int], groups: int, activation: Optional[str],
               negative_slope: float, algorithm: Optional[str], pixel_shuffle: int, backend: str) -> torch.Tensor:
    if input.shape[0] == 0:  # empty batch: same (empty) result as F.conv2d
        return _empty_out(input, weight, stride, padding, dilation, pixel_shuffle)
    return _IMPLS[backend](input, weight, bias, residual, scale, shift, stride, padding, dilation, groups,
                           activation, negative_slope, algorithm, pixel_shuffle)


@_conv2d_op.register_fake
def _(input, weight, bias, residual, scale, shift, stride, padding, dilation, groups, activation, negative_slope,
      algorithm, pixel_shuffle, backend):
    return _empty_out(input, weight, stride, padding, dilation, pixel_shuffle)


def _empty_out(input, weight, stride, padding, dilation, r):
    """An uninitialised output of the right shape and memory format (fake kernel, empty batch)."""
    p, q = checks.conv_output_hw(input.shape[2], input.shape[3], weight.shape[2], weight.shape[3],
                                 stride, padding, dilation)
    out = input.new_empty((input.shape[0], weight.shape[0] // (r * r), p * r, q * r))
    return out.contiguous(memory_format=checks.output_memory_format(input))


def _setup_context(ctx, inputs, output):
    x, w, b, res, scale, shift, stride, padding, dilation, groups, act, slope, _, shuffle, _ = inputs
    ctx.save_for_backward(x, w, b, scale, shift)
    ctx.conf = (stride, padding, dilation, groups, act, slope, b is not None, res is not None, shuffle)


def _backward(ctx, grad):
    x_in, w, b, scale, shift = ctx.saved_tensors
    x = x_in if scale is None else x_in * (scale + 1) + shift  # the modulated input the conv saw
    stride, padding, dilation, groups, act, slope, has_bias, has_res, shuffle = ctx.conf
    grad_pre = F.pixel_unshuffle(grad, shuffle) if shuffle > 1 else grad
    if act is not None:  # recompute the pre-activation (cheaper in memory than saving it)
        pre = F.conv2d(x, w, b, stride, padding, dilation, groups)
        if act == "relu6":  # hardtanh's gradient: zero where clamped
            grad_pre = torch.where((pre > 0) & (pre < 6), grad_pre, torch.zeros_like(grad_pre))
        elif act == "silu":
            grad_pre = torch.ops.aten.silu_backward(grad_pre, pre)
        elif act == "hardswish":
            grad_pre = torch.ops.aten.hardswish_backward(grad_pre, pre)
        elif act in ("gelu", "gelu_tanh"):
            grad_pre = torch.ops.aten.gelu_backward(grad_pre, pre, approximate="tanh" if act == "gelu_tanh" else "none")
        else:
            neg = 0.0 if act == "relu" else slope
            grad_pre = torch.where(pre > 0, grad_pre, grad_pre * neg)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad_pre, x, w, [w.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0], groups,
        [ctx.needs_input_grad[0] or scale is not None, *ctx.needs_input_grad[1:3]],
    )
    g_scale = g_shift = None
    if scale is not None:  # x' = x·(scale + 1) + shift
        g_scale, g_shift, gx = gx * x_in, gx, gx * (scale + 1)
    return (gx, gw, (gb if has_bias else None), (grad if has_res else None), g_scale, g_shift,
            None, None, None, None, None, None, None, None, None)


_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def _narrow(consts, cands):
    """The reference's bf16 Winograd is its definition (einsum over every tile: ~100x the cpu kernel's time), not a
    candidate, where the cpu backend runs it."""
    if consts[6] == "bf16_winograd" and "cpu" in cands and cpu.bf16_available():
        return [b for b in cands if b != "reference"]
    return cands


OP = Op("conv2d", _conv2d_op, _IMPLS, binders={"cpu": cpu.bind}, narrow=_narrow)


# ---- the public function
_NAMES = (str, type(None))  # the types of activation=, algorithm= and backend= a memo key may hold


def _plain(v) -> bool:
    """An int or a tuple of two ints, exactly: the forms a dict key keeps apart (True == 1 as a key)."""
    return type(v) is int or (type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           activation: Optional[str] = None, negative_slope: float = 0.01,
           residual: Optional[torch.Tensor] = None, backend: Optional[str] = None,
           algorithm: Optional[str] = None, pixel_shuffle: int = 1,
           modulation: Optional[tuple] = None) -> torch.Tensor:
    """Drop-in `F.conv2d` with a fused epilogue (and an optional fused SFT modulation of the input).

    Computes ``y = conv2d(input, weight) + bias; y = act(y); y = y + residual`` where ``act`` is None,
    ``"relu"``, ``"leaky_relu"`` (slope ``negative_slope``), ``"relu6"`` (min(max(y, 0), 6)), ``"silu"``
    (y·sigmoid(y)), ``"hardswish"`` (y·relu6(y + 3) / 6), ``"gelu"`` (y·Φ(y), F.gelu) or ``"gelu_tanh"`` (F.gelu
    with approximate="tanh"). With the
    keyword-only extras unset it is exactly ``F.conv2d``: same output shape and memory format (channels_last in,
    channels_last out), unbatched (C, H, W) input, and ``padding="same"`` / ``"valid"`` (an even kernel's
    asymmetric 'same' padding included).
    ``backend`` names one of ``sft_kernels.backends.BACKENDS``; None picks the fastest available one.
    ``algorithm`` (cpu backend): None/"auto" uses Winograd F(4×4,3×3) for 3×3 stride-1 ungrouped convs with
    ≥ 16 input and output channels on images of at least 9 tiles of 4×4 outputs (and more for wide layers: see
    csrc/cpu/conv2d/select.cpp) and direct implicit GEMM otherwise; "direct" or "winograd" force one;
    "winograd_f2" forces F(2×2,3×3): 2.25× fewer multiplies than direct, error no worse than direct's.
    Winograd's rounding error is about 5–10× direct's (relative ~5e-6 in fp32; see sft_kernels.testing).
    "bf16" (float32 tensors, groups=1) rounds the input (after any modulation) and the weight to bfloat16 and sums
    their products in float32 (AMX tiles or AVX512-BF16 vectors), bias and epilogue in float32: what PyTorch's
    ``torch.backends.mkldnn.conv.fp32_precision = "bf16"`` and OpenVINO's bf16 inference precision compute (relative
    error ~1e-2 against float32). The cpu backend runs it on CPUs with AMX-BF16 or AVX512-BF16 (`bf16_available()`,
    `bf16_unit()`), the reference backend defines it. "bf16_winograd" (float32 3×3 convs of stride 1, dilation 1,
    groups 1) runs Winograd F(4×4,3×3) with the transformed input tiles and filters rounded to bfloat16 and float32
    sums: 4× fewer multiplies than "bf16", ~2-5× its error (where vectors multiply bf16, AMD Zen 4, the fastest
    3×3 conv; convert_'s fp32_precision="bf16" measures it against the others).
    ``pixel_shuffle`` r > 1 applies ``F.pixel_shuffle(y, r)`` after the activation and before the residual add
    (written by the store: the cpu backend's Winograd output transform and the Triton kernel's epilogue; the
    cpu direct path and the reference shuffle after the conv).
    ``modulation=(scale, shift)``, both shaped like ``input``, convolves ``input·(scale + 1) + shift`` instead:
    an SFT layer feeding this conv. The cpu backend applies it while packing the input (Winograd tiles or
    implicit-GEMM panels) and Triton while loading A tiles, so the modulated tensor never exists; the cuda
    backend modulates in one pass first (its A tiles go straight from global to shared memory).
    """
    # a (scale, shift) list too (_check accepts one; its tensors had been dropped)
    scale, shift = modulation if type(modulation) in (tuple, list) and len(modulation) == 2 else (None, None)
    sig = _signature(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual,
                     backend, algorithm, pixel_shuffle, modulation, scale, shift)
    if sig is not None:
        return dispatch(OP, backend, (input, weight, bias, residual, scale, shift), sig,
                        lambda: _check(input, weight, bias, stride, padding, dilation, groups, activation,
                                       negative_slope, residual, algorithm, pixel_shuffle, scale, shift, modulation),
                        input)
    if isinstance(input, torch.Tensor) and input.dim() == 3:  # unbatched (C, H, W), as F.conv2d takes it
        def lift(t):
            return None if t is None else t.unsqueeze(0)

        y = conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, activation=activation,
                   negative_slope=negative_slope, residual=lift(residual), backend=backend, algorithm=algorithm,
                   pixel_shuffle=pixel_shuffle,
                   modulation=None if modulation is None else tuple(lift(t) for t in modulation))
        return y.squeeze(0)
    if isinstance(padding, str):
        input, padding, mods = _string_padding(input, weight, stride, dilation, padding, (scale, shift))
        modulation = None if modulation is None else mods
        return conv2d(input, weight, bias, stride, padding, dilation, groups, activation=activation,
                      negative_slope=negative_slope, residual=residual, backend=backend, algorithm=algorithm,
                      pixel_shuffle=pixel_shuffle, modulation=modulation)
    return dispatch(OP, backend, (input, weight, bias, residual, scale, shift), None,
                    lambda: _check(input, weight, bias, stride, padding, dilation, groups, activation,
                                   negative_slope, residual, algorithm, pixel_shuffle, scale, shift, modulation),
                    input)


def _signature(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual,
               backend, algorithm, pixel_shuffle, modulation, scale, shift):
    """The call's memo key for dispatch (runtime/dispatch.py), or None where it cannot have one (tensor
    subclasses, torch.compile, argument forms a dict key would confuse)."""
    if not (type(input) is torch.Tensor and type(weight) in PLAIN and (bias is None or type(bias) in PLAIN)
            and (residual is None or type(residual) is torch.Tensor)
            and (modulation is None or (type(scale) is torch.Tensor and type(shift) is torch.Tensor))
            and _plain(stride) and _plain(padding) and _plain(dilation) and type(groups) is int
            and type(pixel_shuffle) is int and type(negative_slope) in (int, float) and type(activation) in _NAMES
            and type(algorithm) in _NAMES and type(backend) in _NAMES and input.dim() == 4
            and not torch.compiler.is_compiling()):
        return None
    return (input.shape, input.stride(), input.dtype, input.is_cpu, weight.shape, weight.dtype, weight.is_cpu,
            None if bias is None else (bias.shape, bias.dtype, bias.is_cpu), stride, padding, dilation, groups,
            activation, float(negative_slope), algorithm, pixel_shuffle,
            None if residual is None else (residual.shape, residual.dtype, residual.is_cpu),
            None if scale is None else (scale.shape, scale.dtype, scale.is_cpu, shift.shape, shift.dtype,
                                        shift.is_cpu))


def bound(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual, backend,
          algorithm):
    """fn(input, weight, bias, residual) running this call as dispatch's memo would, once the call has run and its
    backend choice is final; else None. A converted module keeps it and calls it directly for inputs of the same
    shape and strides (nn/conv.py), skipping the signature and memo lookup: with caches cold after a large kernel,
    as between a model's layers, that path cost ~100 µs per call (docs/PERF_NOTES.md)."""
    sig = _signature(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual,
                     backend, algorithm, 1, None, None, None)
    hit = memo_entry(OP, backend, sig) if sig is not None else None
    if hit is None:
        return None
    fn, consts = hit[0], hit[1]
    return lambda x, w, b, res: fn(x, w, b, res, None, None, *consts)


def _check(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual, algorithm,
           pixel_shuffle, scale, shift, modulation) -> tuple:
    """Validate one call; return the non-tensor arguments normalised, in the implementations' order."""
    stride, padding, dilation, (p, q) = checks.conv_args(input, weight, bias, stride, padding, dilation, groups)
    checks.activation(activation)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "bf16_winograd" and (tuple(weight.shape[2:]) != (3, 3) or stride != [1, 1]
                                         or dilation != [1, 1] or groups != 1 or input.dtype != torch.float32):
        raise ValueError(f"algorithm='bf16_winograd' runs float32 3x3 convs of stride 1, dilation 1 and groups 1, "
                         f"got a {input.dtype} input, a {tuple(weight.shape[2:])} kernel, stride {stride}, dilation "
                         f"{dilation}, groups {groups}; use algorithm='bf16' for other convs")
    r = pixel_shuffle
    if not isinstance(r, int) or isinstance(r, bool) or r < 1 or weight.shape[0] % (r * r):
        raise ValueError(f"pixel_shuffle must be a positive int whose square divides the output channels "
                         f"({weight.shape[0]}), got {pixel_shuffle!r}")
    checks.residual(residual, "residual", (input.shape[0], weight.shape[0] // (r * r), p * r, q * r), input)
    if modulation is not None:
        if not isinstance(modulation, (tuple, list)) or len(modulation) != 2:
            raise ValueError("modulation must be a (scale, shift) pair of tensors shaped like the input")
        checks.residual(modulation[0], "modulation scale", tuple(input.shape), input)
        checks.residual(modulation[1], "modulation shift", tuple(input.shape), input)
    return stride, padding, dilation, groups, activation, float(negative_slope), algorithm, r


def _string_padding(input, weight, stride, dilation, padding, mods):
    """F.conv2d's padding='valid' / 'same' as integer padding. 'same' with an even kernel (or an odd
    dilation·(k-1)) pads one more on the bottom / right, as ATen does, by padding the input first."""
    if padding == "valid":
        return input, 0, mods
    if padding != "same":
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    if checks.pair(stride, "stride", 1) != [1, 1]:
        raise ValueError("padding='same' is not supported for strided convolutions (as in F.conv2d)")
    checks.tensor(input, "input", 4)
    checks.tensor(weight, "weight", 4, like=input)
    dh, dw = checks.pair(dilation, "dilation", 1)
    total = (dh * (weight.shape[2] - 1), dw * (weight.shape[3] - 1))
    left = (total[0] // 2, total[1] // 2)
    extra = (total[0] - 2 * left[0], total[1] - 2 * left[1])
    if extra != (0, 0):
        fmt = checks.output_memory_format(input)
        pad = (0, extra[1], 0, extra[0])
        input = F.pad(input, pad).contiguous(memory_format=fmt)
        mods = tuple(None if t is None else F.pad(t, pad).contiguous(memory_format=fmt) for t in mods)
    return input, left, mods
