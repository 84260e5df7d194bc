import torch
import torch.nn.functional as F

from ..conv2d.reference import epilogue


def quantize(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Affine uint8: clamp(round(x · (1/scale)) + zero_point, 0, 255), round half to even, in float32 (as the kernels
    and torch.quantize_per_tensor compute it)."""
    inv = torch.tensor(1.0 / scale, dtype=torch.float32)
    return torch.clamp(torch.round(x.to(torch.float32) * inv) + zero_point, 0, 255).to(torch.uint8)


def dequantize(q: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    return (q.to(torch.float32) - zero_point) * scale


def qconv2d_accumulate(x_q, x_zero_point, w_q, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """The exact int32 sums Σ (x_q − x_zero_point)·w_q of every output, as float64 (exact: |sums| < 2^53)."""
    x = x_q.to(torch.float64) - x_zero_point
    return F.conv2d(x, w_q.to(torch.float64), None, stride, padding, dilation, groups)


def qconv2d(x_q, x_scale, x_zero_point, w_q, w_scale, bias=None, residual=None, stride=1, padding=0, dilation=1,
            groups=1, activation=None, negative_slope=0.01, out_scale=0.0, out_zero_point=0, out_dtype=None):
    """y = act(Σ (x_q − zx)·w_q · x_scale·w_scale[k] + bias[k]) + residual, in float64; out_scale > 0 requantizes it
    to uint8 (clamp(round(y / out_scale) + out_zero_point, 0, 255)), or with out_dtype=torch.int8 to int8 (clamped
    to [-128, 127]); else y is returned (float64). A float x_q is quantized first (quantize(x_q, x_scale,
    x_zero_point))."""
    if x_q.is_floating_point():
        x_q = quantize(x_q, x_scale, x_zero_point)
    acc = qconv2d_accumulate(x_q, x_zero_point, w_q, stride, padding, dilation, groups)
    y = acc * (x_scale * w_scale.to(torch.float64)).view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.to(torch.float64).view(1, -1, 1, 1)
    y = epilogue(y, activation, negative_slope, None if residual is None else residual.to(torch.float64))
    if out_scale > 0 and out_dtype == torch.int8:
        inv = torch.tensor(1.0 / out_scale, dtype=torch.float32)
        return torch.clamp(torch.round(y.to(torch.float32) * inv) + out_zero_point, -128, 127).to(torch.int8)
    return quantize(y, out_scale, out_zero_point) if out_scale > 0 else y
