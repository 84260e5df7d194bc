"""The `sft` op library. Each op validates its arguments, picks a backend and calls its
`torch.library` op (`torch.ops.sft.<name>`)."""
from .conv2d import conv2d
from .matmul import matmul
from .separable_conv2d import separable_conv2d
from .strassen_matmul import strassen_matmul

__all__ = ["conv2d", "matmul", "separable_conv2d", "strassen_matmul"]
