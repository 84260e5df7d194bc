"""Every tolerance the tests use, in one place.

An op against its float64 reference: the error of a length-K fp32 dot product grows like sqrt(K)·eps·|terms| for
random data, so the absolute tolerance scales with the reduction length K = C/groups·kh·kw and the reference's
magnitude (`tolerance`, `assert_close`; Winograd and Strassen have their own growth factors). Comparisons of two
results computed in the same low precision (ours vs PyTorch's own float32, a model before and after a transform)
use the named budgets of `tol`.
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


# algorithm="bf16_winograd" against its definition (ops.conv2d's reference backend): both round the float32
# transformed tiles and filters to bf16, but compute them in different orders, so a value next to a rounding boundary
# can land one bf16 step (2^-8 relative) apart, a filter's for every tile, and the output transform's constants (up
# to 8 per axis) amplify it: measured up to 3e-3 of the output's largest magnitude, 2e-4 of its RMS (random data;
# the bf16 rounding itself moves the output ~2.5e-2 of its RMS from float32's).
BF16_WINOGRAD_OF_MAX = 1e-2
BF16_WINOGRAD_OF_RMS = 1e-3

# Strassen–Winograd adds roughly one rounding of the operand magnitudes per level: a factor 4 per level over plain
# GEMM's budget (measured within it for depths 1-3 on random operands).
STRASSEN_FACTOR_PER_LEVEL = 4.0

# (atol, rtol) for comparisons that are not "an op against its float64 reference".
NAMED = {
    "exact": (0.0, 0.0),  # the same arithmetic in the same order: bit for bit
    "fp32": (1e-4, 1e-4),  # ours vs PyTorch in float32 on O(1) values, a whole model's depth of roundings included
    "fp32_tight": (1e-5, 1e-5),  # the same float32 ops on O(1) values, only grouped or ordered differently
    "fp32_wide": (1e-3, 1e-4),  # the same on values of magnitude ~10-100 (unnormalised random convs and GEMMs)
    "fp32_pointwise": (1e-6, 0.0),  # elementwise / resampling in float32 on values in [0, 1]
    "fp64_pointwise": (1e-12, 0.0),  # the same in float64
    "bf16_training": (2e-3, 0.0),
    "fp32_grad": (1e-7, 1e-4),  # gradients of a small model's float32 loss, fused forward vs eager (values ~1e-5-1e-1)
    # an int8 conv's float output against the float64 reference: integer sums are exact, one epilogue rounding remains
    "int8_epilogue": (1e-4, 1e-5),
    "bf16_output": (5e-2, 1e-2),  # a bf16-stored output (8-bit mantissa) of O(1)-O(10) values against float64  # fp32 master weights after bf16-autocast steps vs fp32 steps
    "onnx_fp32": (1e-4, 0.0),  # onnxruntime running an export vs the model, outputs O(1)
    # an int8 export (QDQ) vs the int8 model: ONNX's QuantizeLinear divides by the scale where our kernels multiply by
    # its inverse, so an input value can land one step apart, through a whole model's depth (SFTNet: ~1e-2 measured)
    "onnx_int8": (2e-2, 0.0),
    # ... and where a deep model compounds those steps past that (torchvision's ResNet-50 at 224²: 0.88 on logits of
    # ±85; FCN-ResNet50: 0.64 of ±23), the export is accepted at this SQNR against the int8 model (those two: 42 and
    # 37 dB, as close to the float model as our int8 outputs are)
    "onnx_int8_sqnr_db": (35.0, 0.0),
    "int8_sqnr_db": (25.0, 0.0),  # min SQNR of a small CNN's int8 outputs against its float ones (8-bit: 30-45 dB)
}


def tol(kind: str) -> dict:
    """``torch.testing.assert_close(a, b, **tol("fp32"))``: the named (atol, rtol) budget."""
    atol, rtol = NAMED[kind]
    return dict(atol=atol, rtol=rtol)


def tolerance(dtype: torch.dtype, k: int, ref_max: float, winograd: bool = False, strassen_levels: int = 0) -> tuple:
    c, rtol = TOLERANCES[dtype]
    if winograd:
        c *= WINOGRAD_FACTOR
    c *= STRASSEN_FACTOR_PER_LEVEL ** strassen_levels
    eps = torch.finfo(dtype).eps
    return c * eps * math.sqrt(max(k, 1)) * max(ref_max, 1e-30), rtol


def assert_close(actual: torch.Tensor, expected: torch.Tensor, k: int, msg: str = "", winograd: bool = False,
                 strassen_levels: int = 0) -> None:
    """Compare `actual` (any dtype) with a float64 `expected` using the K-scaled tolerance of actual's dtype."""
    atol, rtol = tolerance(actual.dtype, k, expected.abs().max().item() if expected.numel() else 0.0, winograd,
                           strassen_levels)
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol, msg=msg or None)
