import torch
import torch.nn.functional as F


def bf16_rounded(t):
    """t rounded to bfloat16 (nearest even) and held in its own dtype: the operands of algorithm="bf16"."""
    return t.to(torch.bfloat16).to(t.dtype)


def epilogue(y, activation=None, negative_slope=0.01, residual=None):
    """The fused epilogue of the contract, in order: activation, then residual add (bias is added before)."""
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    elif activation == "relu6":
        y = F.relu6(y)
    elif activation == "silu":
        y = F.silu(y)
    elif activation == "hardswish":
        y = F.hardswish(y)
    elif activation == "gelu":
        y = F.gelu(y)
    elif activation == "gelu_tanh":
        y = F.gelu(y, approximate="tanh")
    elif activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    if residual is not None:
        y = y + residual
    return y


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           activation=None, negative_slope=0.01, residual=None, pixel_shuffle=1, modulation=None):
    """y = act(F.conv2d(x, weight, bias, ...)); y = pixel_shuffle(y, r) if r > 1; y = y + residual, where
    x = input·(scale + 1) + shift for modulation=(scale, shift) (an SFT layer feeding the conv), else input."""
    if modulation is not None:
        input = input * (modulation[0] + 1) + modulation[1]
    y = epilogue(F.conv2d(input, weight, bias, stride, padding, dilation, groups), activation, negative_slope)
    if pixel_shuffle > 1:
        y = F.pixel_shuffle(y, pixel_shuffle)
    return y if residual is None else y + residual
