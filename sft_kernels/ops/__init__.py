"""The `sft` op library. Each op validates its arguments, picks a backend and calls its
`torch.library` op (`torch.ops.sft.<name>`)."""
from .conv2d import conv2d
from .inverted_residual import inverted_residual
from .matmul import matmul
from .qconv2d import qconv2d
from .qconv2d_winograd import qconv2d_winograd
from .qsft_layer import qsft_layer
from .qsft_modulation import qsft_modulation
from .separable_conv2d import separable_conv2d
from .sft_layer import sft_layer
from .sft_modulation import sft_modulation
from .sparse_conv2d import sparse_conv2d
from .strassen_matmul import strassen_matmul

__all__ = ["conv2d", "inverted_residual", "matmul", "qconv2d", "qconv2d_winograd", "qsft_layer", "qsft_modulation",
           "separable_conv2d", "sft_layer", "sft_modulation", "sparse_conv2d", "strassen_matmul"]
