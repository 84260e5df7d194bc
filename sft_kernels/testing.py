"""Tolerances for comparing an op's output with its float64 reference, in one place.

The error of a length-K fp32 dot product grows like sqrt(K)·eps·|terms| for random data, so the absolute
tolerance scales with the reduction length K = C/groups·kh·kw and the reference's magnitude.
"""
import math

import torch

# per dtype: (eps multiplier c, relative tolerance) with atol = c * eps * sqrt(K) * max|ref|
TOLERANCES = {
    torch.float64: (10.0, 1e-9),
    torch.float32: (10.0, 1e-5),
    torch.float16: (4.0, 2e-3),  # inputs are rounded to fp16 too, hence a larger factor per eps
    torch.bfloat16: (4.0, 1.6e-2),
}


# Winograd F(4×4,3×3) multiplies the rounding error of direct convolution by the growth of its transforms
# (constants up to 8 and 1/24): measured 5–10× in fp32 (relative max error ~5e-6 at C = 64), so its
# fp32 budget is 4× direct's.
WINOGRAD_FACTOR = 4.0


def tolerance(dtype: torch.dtype, k: int, ref_max: float, winograd: bool = False) -> tuple:
    c, rtol = TOLERANCES[dtype]
    if winograd:
        c *= WINOGRAD_FACTOR
    eps = torch.finfo(dtype).eps
    return c * eps * math.sqrt(max(k, 1)) * max(ref_max, 1e-30), rtol


def assert_close(actual: torch.Tensor, expected: torch.Tensor, k: int, msg: str = "", winograd: bool = False) -> None:
    """Compare `actual` (any dtype) with a float64 `expected` using the K-scaled tolerance of actual's dtype."""
    atol, rtol = tolerance(actual.dtype, k, expected.abs().max().item() if expected.numel() else 0.0, winograd)
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol, msg=msg or None)
