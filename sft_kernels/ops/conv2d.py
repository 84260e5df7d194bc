"""sft.conv2d: F.conv2d with a fused epilogue  y = act(conv(x, w) + bias) [-> PixelShuffle] + residual.

Registered as the `torch.library` op `sft::conv2d` (fake kernel + autograd), so it works under
`torch.compile(fullgraph=True)` and passes `torch.library.opcheck`. The backward is the reference one
(aten convolution_backward on a recomputed pre-activation): good enough for fine-tuning converted models.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import autotune, backends, reference, weight_pack
from . import _checks

_SCHEMA_ACTS = {None: 0, "relu": 1, "leaky_relu": 2}
ALGORITHMS = (None, "auto", "direct", "winograd", "winograd_f2")
_SCHEMA_ALGOS = {None: 0, "auto": 0, "direct": 1, "winograd": 2, "winograd_f2": 3}


def _no_winograd(backend, algorithm):
    if algorithm in ("winograd", "winograd_f2"):
        raise backends.BackendUnavailableError(
            f"backend {backend!r} has no Winograd conv; only the 'cpu' backend implements algorithm={algorithm!r}")


def _impl_reference(x, w, b, stride, padding, dilation, groups, act, slope, res, algorithm, shuffle, scale, shift):
    _no_winograd("reference", algorithm)
    mod = None if scale is None else (scale, shift)
    y = reference.conv2d(x, w, b, stride, padding, dilation, groups, act, slope, res, shuffle, mod)
    return y.contiguous(memory_format=_checks.output_memory_format(x))


def _impl_cpu(x, w, b, stride, padding, dilation, groups, act, slope, res, algorithm, shuffle, scale, shift):
    backends.cpu_ext()  # registers torch.ops.sft_cpu
    if scale is not None and x.stride(1) == 1:  # fused into packing when strided like the input
        scale, shift = (t if t.stride() == x.stride() else torch.empty_like(x).copy_(t) for t in (scale, shift))
    return torch.ops.sft_cpu.conv2d(x, w, b, stride, padding, dilation, groups,
                                    _SCHEMA_ACTS[act], slope, res, _SCHEMA_ALGOS[algorithm], shuffle, scale, shift)


def _impl_triton(x, w, b, stride, padding, dilation, groups, act, slope, res, algorithm, shuffle, scale, shift):
    from .. import triton as sft_triton

    _no_winograd("triton", algorithm)
    w = weight_pack.packed(w, "triton_rsck", _rsck)
    return sft_triton.load().conv2d(x, w, b, tuple(stride), tuple(padding), tuple(dilation), groups,
                                    act, slope, res, pixel_shuffle=shuffle,
                                    modulation=None if scale is None else (scale, shift))


def _rsck(w):
    """The weight as an RSCK-strided view of shape KCRS: the Triton kernel's B tiles then load contiguous rows."""
    return w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)


def _impl_cuda(x, w, b, stride, padding, dilation, groups, act, slope, res, algorithm, shuffle, scale, shift):
    from .. import cuda_conv

    _no_winograd("cuda", algorithm)
    if scale is not None:  # the CUDA kernel's A tiles go global->shared by cp.async: modulate in one pass first
        x = torch.addcmul(shift, x, scale + 1)
    return cuda_conv.conv2d(x, w, b, stride, padding, dilation, groups, act, slope, res, pixel_shuffle=shuffle)


_IMPLS = {"reference": _impl_reference, "cpu": _impl_cpu, "triton": _impl_triton, "cuda": _impl_cuda}


@torch.library.custom_op("sft::conv2d", mutates_args=())
def _conv2d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: list[int],
               padding: list[int], dilation: list[int], groups: int, activation: Optional[str],
               negative_slope: float, residual: Optional[torch.Tensor], backend: str,
               algorithm: Optional[str] = None, pixel_shuffle: int = 1, scale: Optional[torch.Tensor] = None,
               shift: Optional[torch.Tensor] = None) -> torch.Tensor:
    if input.shape[0] == 0:  # empty batch: same (empty) result as F.conv2d
        return _empty_out(input, weight, stride, padding, dilation, pixel_shuffle)
    return _IMPLS[backend](input, weight, bias, stride, padding, dilation, groups, activation,
                           negative_slope, residual, algorithm, pixel_shuffle, scale, shift)


@_conv2d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, residual, backend,
      algorithm=None, pixel_shuffle=1, scale=None, shift=None):
    return _empty_out(input, weight, stride, padding, dilation, pixel_shuffle)


def _empty_out(input, weight, stride, padding, dilation, r):
    """An uninitialised output of the right shape and memory format (fake kernel, empty batch)."""
    p, q = _checks.conv_output_hw(input.shape[2], input.shape[3], weight.shape[2], weight.shape[3],
                                  stride, padding, dilation)
    out = input.new_empty((input.shape[0], weight.shape[0] // (r * r), p * r, q * r))
    return out.contiguous(memory_format=_checks.output_memory_format(input))


def _setup_context(ctx, inputs, output):
    x, w, b, stride, padding, dilation, groups, act, slope, res = inputs[:10]
    shuffle = inputs[12] if len(inputs) > 12 else 1
    scale, shift = (inputs[13], inputs[14]) if len(inputs) > 14 else (None, None)
    ctx.save_for_backward(x, w, b, scale, shift)
    ctx.conf = (stride, padding, dilation, groups, act, slope, b is not None, res is not None, shuffle)


def _backward(ctx, grad):
    x_in, w, b, scale, shift = ctx.saved_tensors
    x = x_in if scale is None else x_in * (scale + 1) + shift  # the modulated input the conv saw
    stride, padding, dilation, groups, act, slope, has_bias, has_res, shuffle = ctx.conf
    grad_pre = torch.nn.functional.pixel_unshuffle(grad, shuffle) if shuffle > 1 else grad
    if act is not None:  # recompute the pre-activation (cheaper in memory than saving it)
        pre = torch.nn.functional.conv2d(x, w, b, stride, padding, dilation, groups)
        neg = 0.0 if act == "relu" else slope
        grad_pre = torch.where(pre > 0, grad_pre, grad_pre * neg)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad_pre, x, w, [w.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0], groups,
        [ctx.needs_input_grad[0] or scale is not None, *ctx.needs_input_grad[1:3]],
    )
    g_scale = g_shift = None
    if scale is not None:  # x' = x·(scale + 1) + shift
        g_scale, g_shift, gx = gx * x_in, gx, gx * (scale + 1)
    return (gx, gw, (gb if has_bias else None), None, None, None, None, None, None, (grad if has_res else None),
            None, None, None, g_scale, g_shift)


_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


# Validated eager call signatures -> (backend, stride, padding, dilation); see conv2d. Emptied with the
# autotune decisions it may hold.
_SEEN: dict = {}
autotune._ON_CLEAR.append(_SEEN.clear)


_NAMES = (str, type(None))  # the types of activation=, algorithm= and backend= a key may hold


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
    ``"relu"`` or ``"leaky_relu"`` (slope ``negative_slope``). With the keyword-only extras unset it is
    exactly ``F.conv2d`` (same output shape and memory format: channels_last in, channels_last out).
    ``backend`` names one of ``sft_kernels.backends.BACKENDS``; None picks the fastest available one.
    ``algorithm`` (cpu backend): None/"auto" uses Winograd F(4×4,3×3) for 3×3 stride-1 ungrouped convs with
    ≥ 16 input and output channels on images of at least 9 tiles of 4×4 outputs (and more for wide layers: see
    ``winograd_pays``) and direct implicit GEMM otherwise; "direct" or "winograd" force one;
    "winograd_f2" forces F(2×2,3×3): 2.25× fewer multiplies than direct, error no worse than direct's.
    Winograd's rounding error is about 5–10× direct's (relative ~5e-6 in fp32; see sft_kernels.testing).
    ``pixel_shuffle`` r > 1 applies ``F.pixel_shuffle(y, r)`` after the activation and before the residual add
    (written by the store: the cpu backend's Winograd output transform and the Triton kernel's epilogue; the
    cpu direct path and the reference shuffle after the conv).
    ``modulation=(scale, shift)``, both shaped like ``input``, convolves ``input·(scale + 1) + shift`` instead:
    an SFT layer feeding this conv. The cpu backend applies it while packing the input (Winograd tiles or
    implicit-GEMM panels) and Triton while loading A tiles, so the modulated tensor never exists; the cuda
    backend modulates in one pass first (its A tiles go straight from global to shared memory).
    """
    # Eager repeats of a call already validated (same shapes, dtypes, devices and options, residual and
    # modulation included) skip the checks and the backend choice: after a large kernel the interpreter runs with
    # cold caches and each tensor attribute read cost ~0.7 µs, the full path ~35 µs, 7 % of conv0 at 128x128 (a
    # 0.45 ms kernel).
    seen_key = None
    mod = modulation is None or (type(modulation) is tuple and len(modulation) == 2
                                 and type(modulation[0]) is torch.Tensor and type(modulation[1]) is torch.Tensor)
    if (mod and (residual is None or type(residual) is torch.Tensor) and type(input) is torch.Tensor
            and type(weight) in _checks.PLAIN and (bias is None or type(bias) in _checks.PLAIN) and _plain(stride)
            and _plain(padding) and _plain(dilation) and type(groups) is int and type(pixel_shuffle) is int
            and type(negative_slope) in (int, float) and type(activation) in _NAMES and type(algorithm) in _NAMES
            and type(backend) in _NAMES and not torch.compiler.is_compiling()):
        sc, sh = modulation if modulation is not None else (None, None)
        seen_key = (input.shape, input.stride(), input.dtype, input.is_cpu, weight.shape, weight.dtype,
                    weight.is_cpu, None if bias is None else (bias.shape, bias.dtype, bias.is_cpu), stride, padding,
                    dilation, groups, activation, algorithm, pixel_shuffle, backend,
                    backends.env("SFT_KERNELS_BACKEND"), backends.env("SFT_KERNELS_AUTOTUNE"),
                    torch.get_num_threads(),
                    None if residual is None else (residual.shape, residual.dtype, residual.is_cpu),
                    None if sc is None else (sc.shape, sc.dtype, sc.is_cpu, sh.shape, sh.dtype, sh.is_cpu))
        hit = _SEEN.get(seen_key)
        if hit is not None and not ((input.requires_grad or weight.requires_grad
                                     or (bias is not None and bias.requires_grad)
                                     or (residual is not None and residual.requires_grad)
                                     or (sc is not None and (sc.requires_grad or sh.requires_grad)))
                                    and torch.is_grad_enabled()):
            name, st, pd, dl = hit
            if name == "cpu" and sc is None:  # (a modulation may need restriding first: _impl_cpu)
                return torch.ops.sft_cpu.conv2d.default(input, weight, bias, st, pd, dl, groups,
                                                        _SCHEMA_ACTS[activation], float(negative_slope), residual,
                                                        _SCHEMA_ALGOS[algorithm], pixel_shuffle, None, None)
            return _IMPLS[name](input, weight, bias, list(st), list(pd), list(dl), groups, activation,
                                float(negative_slope), residual, algorithm, pixel_shuffle, sc, sh)
    stride, padding, dilation, (p, q) = _checks.conv_args(input, weight, bias, stride, padding, dilation, groups)
    _checks.activation(activation)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    r = pixel_shuffle
    if not isinstance(r, int) or isinstance(r, bool) or r < 1 or weight.shape[0] % (r * r):
        raise ValueError(f"pixel_shuffle must be a positive int whose square divides the output channels "
                         f"({weight.shape[0]}), got {pixel_shuffle!r}")
    _checks.residual(residual, "residual", (input.shape[0], weight.shape[0] // (r * r), p * r, q * r), input)
    scale = shift = None
    if modulation is not None:
        if not isinstance(modulation, (tuple, list)) or len(modulation) != 2:
            raise ValueError("modulation must be a (scale, shift) pair of tensors shaped like the input")
        scale, shift = modulation
        _checks.residual(scale, "modulation scale", tuple(input.shape), input)
        _checks.residual(shift, "modulation shift", tuple(input.shape), input)
    name = backends.resolve_for(backend, "conv2d", input)
    if backend is None and autotune.enabled() and not torch.compiler.is_compiling():
        cands = backends.candidates("conv2d", input.device, input.dtype)
        key = ("conv2d", tuple(input.shape), input.stride(), tuple(weight.shape), tuple(stride), tuple(padding),
               tuple(dilation), groups, activation, residual is not None, bias is not None, algorithm, r, input.dtype,
               input.device.type, torch.get_num_threads(), scale is not None)
        run = lambda b: _conv2d_op(input, weight, bias, stride, padding, dilation, groups, activation,  # noqa: E731
                                   float(negative_slope), residual, b, algorithm, r, scale, shift)
        name = autotune.pick(key, cands, run, device=input.device)
    if seen_key is not None and input.shape[0] and len(_SEEN) < 4096:
        _SEEN[seen_key] = (name, stride, padding, dilation)
    if input.shape[0] and _checks.direct_call_ok(input, weight, bias, residual, scale, shift):
        return _IMPLS[name](input, weight, bias, stride, padding, dilation, groups, activation,
                            float(negative_slope), residual, algorithm, r, scale, shift)
    return _conv2d_op(input, weight, bias, stride, padding, dilation, groups, activation,
                      float(negative_slope), residual, name, algorithm, r, scale, shift)
