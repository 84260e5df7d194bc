"""Argument checks shared by the ops: every error names the argument and says what was expected. Also the
conv output-size formula and the memory-format rule every conv backend follows (both exist once, here)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

IntPair = Union[int, Sequence[int]]
ACTIVATIONS = (None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh")  # kernel codes: ACTIVATIONS.index(name)


def pair(value: IntPair, name: str, minimum: int) -> list:
    # The common valid forms first: three calls per conv, a few µs each through the general path below.
    if type(value) is int and value >= minimum:
        return [value, value]
    if type(value) in (tuple, list) and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and min(value) >= minimum:
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, str):  # conv2d's 'same' / 'valid' are F.conv2d's; these ops take numbers
        raise ValueError(f"{name}={value!r} is not supported here: pass an int or a pair of ints (e.g. padding=k // 2 "
                         "for 'same' with an odd kernel k and stride 1)")
    try:
        vals = [int(v) for v in value]
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(vals) != 2 or any(isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {tuple(vals)}")
    return vals


def tensor(t, name: str, ndim: Optional[int] = None, like: Optional[torch.Tensor] = None,
           dtypes: Optional[Sequence[torch.dtype]] = None) -> None:
    """`t` is a tensor of `ndim` dims (if given), of one of `dtypes` (default: any floating dtype), on the device of
    `like` and of its dtype (if given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is None and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype {' or '.join(str(d) for d in dtypes)}, got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor, got {t.dim()}-D with shape {tuple(t.shape)}")
    if like is not None:
        # is_cpu first: building two torch.device objects costs ~8 µs per call with cold caches.
        if (t.is_cpu != like.is_cpu) or (not t.is_cpu and t.device != like.device):
            raise ValueError(f"{name} is on {t.device} but input is on {like.device}; move them to one device")
        if t.dtype != like.dtype:
            raise TypeError(f"{name} dtype {t.dtype} does not match input dtype {like.dtype}")


def uint8_affine(name: str, scale, zero_point) -> tuple:
    """(float scale, int zero point) of a uint8 affine quantization, checked: scale > 0, zero point in [0, 255]."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        raise ValueError(f"{name} scale must be a positive number, got {scale!r}")
    if not isinstance(zero_point, int) or isinstance(zero_point, bool) or not 0 <= zero_point <= 255:
        raise ValueError(f"{name} zero point must be an int in [0, 255] (uint8 affine), got {zero_point!r}")
    return float(scale), int(zero_point)


def uint8_affine_pair(name: str, v) -> tuple:
    """uint8_affine of a (scale, zero_point) tuple passed as one argument."""
    if not isinstance(v, tuple) or len(v) != 2:
        raise TypeError(f"{name} must be a (scale, zero_point) tuple, got {v!r}")
    return uint8_affine(name, *v)


def pixel_shuffle(r, k: int) -> int:
    """A PixelShuffle factor for k output channels, checked: an int >= 1 whose square divides k."""
    if not isinstance(r, int) or isinstance(r, bool) or r < 1 or k % (r * r):
        raise ValueError(f"pixel_shuffle must be an int >= 1 whose square divides the {k} output channels, got {r!r}")
    return r


def activation(act: Optional[str]) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {act!r}")


def conv_output_hw(h: int, w: int, kh: int, kw: int, stride, padding, dilation) -> tuple:
    p = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if p <= 0 or q <= 0:
        raise ValueError(
            f"input spatial size ({h}, {w}) is too small for kernel ({kh}, {kw}) with padding "
            f"{tuple(padding)} and dilation {tuple(dilation)}: output would be ({p}, {q})"
        )
    return p, q


def conv_args(input, weight, bias, stride, padding, dilation, groups):
    """Validate F.conv2d-style arguments; return (stride, padding, dilation) as lists and (P, Q)."""
    tensor(input, "input", 4)
    tensor(weight, "weight", 4, like=input)
    if bias is not None:
        tensor(bias, "bias", 1, like=input)
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation", 1)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n, c, h, w = input.shape
    k, cg, kh, kw = weight.shape
    if k == 0 or cg == 0 or kh == 0 or kw == 0:
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty: a conv needs at least one input and one "
                         "output channel and a kernel of at least 1×1")
    if c % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({c})")
    if k % groups:
        raise ValueError(f"groups={groups} must divide the output channels of weight ({k})")
    if cg * groups != c:
        raise ValueError(
            f"weight/input channel mismatch: input has {c} channels but weight of shape {tuple(weight.shape)} "
            f"with groups={groups} expects {cg * groups}"
        )
    if bias is not None and bias.shape[0] != k:
        raise ValueError(f"bias must have {k} elements (one per output channel), got {bias.shape[0]}")
    p, q = conv_output_hw(h, w, kh, kw, stride, padding, dilation)
    return stride, padding, dilation, (p, q)


def is_channels_last_strided(t: torch.Tensor) -> bool:
    """ATen's `suggest_memory_format` for a 4-D tensor: True when its strides order the dims C, W, H, N from
    fastest to slowest (exact channels_last, or a view of it such as a channel or spatial slice)."""
    if t.dim() != 4:
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    low = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < low:
            return False
        if d == 0 and low == strides[1]:  # ambiguous N111-like layouts default to NCHW, as in ATen
            return False
        low = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def output_memory_format(input: torch.Tensor) -> torch.memory_format:
    """The memory format F.conv2d gives its output on the CPU: channels_last iff the input's strides are
    channels-last-like (ATen's suggest_memory_format), e.g. a channels_last tensor or a slice of one."""
    return torch.channels_last if is_channels_last_strided(input) else torch.contiguous_format


def residual(res, name: str, shape: tuple, like: torch.Tensor) -> None:
    if res is None:
        return
    tensor(res, name, 4, like=like)
    if tuple(res.shape) != tuple(shape):
        raise ValueError(f"{name} must have the output's shape {tuple(shape)}, got {tuple(res.shape)}")


def shuffled_residual(residual, pixel_shuffle):
    """A residual given in the shape of an op's PixelShuffle(r) output, as every op's epilogue takes it (y = shuffle(
    act(conv + bias)) + residual), turned into the conv's own output shape (F.pixel_unshuffle), which the int8
    kernels add before their shuffled store; anything else is returned as is for the op's checks."""
    if residual is None or type(pixel_shuffle) is not int or pixel_shuffle <= 1 or \
            not isinstance(residual, torch.Tensor) or residual.dim() != 4:
        return residual
    r = pixel_shuffle
    if residual.shape[2] % r or residual.shape[3] % r:
        raise ValueError(f"with pixel_shuffle={r} the residual is shaped like the shuffled output (N, K/{r * r}, "
                         f"P·{r}, Q·{r}), got {tuple(residual.shape)}")
    return torch.nn.functional.pixel_unshuffle(residual, r)


def residual_shape_error(residual, expected: tuple, pixel_shuffle: int) -> ValueError:
    """The error for a residual of the wrong shape, in the shape the caller gave (shuffled where the op shuffles)."""
    r, (n, k, p, q), got = pixel_shuffle, expected, tuple(residual.shape)
    if r > 1:
        expected, got = (n, k // (r * r), p * r, q * r), (got[0], got[1] // (r * r), got[2] * r, got[3] * r)
    return ValueError(f"residual must have the output's shape {expected}, got {got}")
