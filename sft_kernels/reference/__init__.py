"""Plain-PyTorch definitions of every `sft` op (each lives in its op's folder as reference.py): the oracle for
tests and the baseline for benchmarks. They run in the dtype they are given (float64 included), so tests call
them on float64 copies."""
from ..ops.conv2d.reference import conv2d, epilogue
from ..ops.matmul.reference import matmul
from ..ops.qconv2d.reference import qconv2d
from ..ops.separable_conv2d.reference import separable_conv2d
from ..ops.strassen_matmul.reference import strassen_matmul

__all__ = ["conv2d", "epilogue", "matmul", "qconv2d", "separable_conv2d", "strassen_matmul"]
