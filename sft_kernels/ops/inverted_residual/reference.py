from ..conv2d.reference import epilogue
from ..separable_conv2d.reference import separable_conv2d


def inverted_residual(input, ex_weight, dw_weight, pw_weight, ex_bias=None, dw_bias=None, pw_bias=None, stride=1,
                      padding=0, dilation=1, ex_activation=None, mid_activation=None, activation=None,
                      negative_slope=0.01, residual=None):
    """1×1 conv (ex_weight E×C×1×1) -> ex_activation -> depthwise conv (dw_weight E·m×1×R×S, groups = E) ->
    mid_activation -> 1×1 conv (pw_weight K×E·m×1×1) -> activation -> + residual: MobileNetV2's inverted residual
    block with its batch norms folded."""
    import torch.nn.functional as F

    y = epilogue(F.conv2d(input, ex_weight, ex_bias), ex_activation, negative_slope)
    return separable_conv2d(y, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, mid_activation,
                            activation, negative_slope, residual)
