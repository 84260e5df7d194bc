"""The reference of sft.sparse_conv2d: the dense conv of the masked weight (zeros included) with the fused
epilogue; the sparse kernels must match it."""
from ..conv2d import reference as conv_ref


def sparse_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None,
                  negative_slope=0.01, residual=None, modulation=None, pixel_shuffle=1):
    return conv_ref.conv2d(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope,
                           residual, pixel_shuffle, modulation)


def density(weight) -> float:
    """The fraction of the weight's entries that are nonzero."""
    return float((weight != 0).sum()) / max(1, weight.numel())
