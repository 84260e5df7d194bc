import torch.nn.functional as F

from ..conv2d.reference import epilogue


def separable_conv2d(input, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=1, padding=0,
                     dilation=1, mid_activation=None, activation=None, negative_slope=0.01, residual=None):
    """Depthwise conv (groups = channels, dw_weight C·m×1×R×S, channel multiplier m) -> mid_activation -> 1×1 conv
    (pw_weight K×C·m×1×1) -> activation -> + residual."""
    c = input.shape[1]
    y = F.conv2d(input, dw_weight, dw_bias, stride, padding, dilation, groups=c)
    y = epilogue(y, mid_activation, negative_slope)
    y = F.conv2d(y, pw_weight, pw_bias)
    return epilogue(y, activation, negative_slope, residual)
