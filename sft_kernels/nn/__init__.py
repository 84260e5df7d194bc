"""Drop-in modules: same parameters, state_dict keys and semantics as their torch.nn counterparts."""
from .conv import Conv2d, EagerConv2d
from .conv_transpose import ConvTranspose2d
from .folded_conv import FoldedConv2d
from .inverted_residual import InvertedResidual
from .linear import Linear
from .pooling import MaxPool2d
from .quant_conv_transpose import QuantConvTranspose2d
from .quantized import QuantConv2d, QuantLinear
from .separable import SeparableConv2d
from .sparse import SparseConv2d

__all__ = ["Conv2d", "ConvTranspose2d", "EagerConv2d", "FoldedConv2d", "InvertedResidual", "Linear", "MaxPool2d",
           "SeparableConv2d", "QuantConv2d", "QuantConvTranspose2d", "QuantLinear", "SparseConv2d"]
