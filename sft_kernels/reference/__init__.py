"""Plain-PyTorch definitions of every `sft` op: the oracle for tests and the baseline for benchmarks.

They run in the dtype they are given (float64 included), so tests call them on float64 copies.
"""
from .conv2d import conv2d, epilogue
from .matmul import matmul
from .separable_conv2d import separable_conv2d
from .strassen_matmul import strassen_matmul

__all__ = ["conv2d", "epilogue", "matmul", "separable_conv2d", "strassen_matmul"]
