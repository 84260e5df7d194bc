"""sft.qconv2d's cuda backend without a GPU: the launcher (ops/qconv2d/cuda.py: NHWC uint8 input, KRSC int8 weight,
channels padded to 16 per group, Σw, per-channel multipliers) against the integer reference, through an emulation
of the kernel's contract (csrc/cuda/qconv2d/qconv2d.h), including how the kernel treats padding taps (they read
the zero point). The kernel source compiles for sm_80 and sm_90 in tests/ops/conv2d/test_cuda.py (every .cu);
on a GPU, tests/gpu/test_gpu.py runs it."""
import inspect
import os
import re

import pytest
import torch
import torch.nn.functional as F

from sft_kernels.ops.qconv2d import cuda as qcuda
from sft_kernels.ops.qconv2d import reference as ref
from sft_kernels.testing import tol, tolerance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def emulate_kernel(x, w, wsum, mult, bias, residual, stride, padding, dilation, groups, x_zero_point, activation,
                   negative_slope, out_scale, out_zero_point, config, out_dtype, res_scale, res_zero_point):
    """torch.ops.sft_cuda.qconv2d_nhwc's contract in float64 (exact for the integer part): the sums run over every
    tap with taps outside the image reading the zero point, and the shift comes out once through wsum; int8 and
    bfloat16 outputs, a uint8 residual (res_scale > 0) dequantized in float32."""
    assert x.dtype == torch.uint8 and w.dtype == torch.int8 and wsum.dtype == torch.int32
    assert mult.dtype == torch.float32 and x.is_contiguous() and w.is_contiguous() and config == -1
    assert x.shape[3] == groups * w.shape[3] and w.shape[3] % 16 == 0, "channels per group: a multiple of 16"
    xd = F.pad(x.double().permute(0, 3, 1, 2), (padding[1], padding[1], padding[0], padding[0]),
               value=float(x_zero_point))
    acc = F.conv2d(xd, w.double().permute(0, 3, 1, 2), None, stride, 0, dilation, groups)
    v = (acc - x_zero_point * wsum.double().view(1, -1, 1, 1)) * mult.double().view(1, -1, 1, 1)
    if bias is not None:
        v = v + bias.double().view(1, -1, 1, 1)
    v = v.relu() if activation == 1 else F.leaky_relu(v, negative_slope) if activation == 2 else v
    v = v.permute(0, 2, 3, 1)
    if residual is not None:
        assert residual.dtype == (torch.uint8 if res_scale > 0 else torch.float32) and residual.is_contiguous()
        assert residual.shape == v.shape
        v = v + (ref.dequantize(residual, res_scale, res_zero_point) if res_scale > 0 else residual).double()
    if out_scale > 0:
        lo, dtype = (-128, torch.int8) if out_dtype == torch.int8 else (0, torch.uint8)
        return torch.clamp(torch.round(v / out_scale) + out_zero_point, lo, lo + 255).to(dtype).contiguous()
    return v.float().to(out_dtype or torch.float32).contiguous()


def test_emulation_takes_the_kernel_schema():
    with open(os.path.join(ROOT, "csrc", "cuda", "qconv2d", "bindings.cpp")) as f:
        src = f.read()
    call = re.search(r'm\.def\(("qconv2d_nhwc\(.*?\) -> Tensor")\);', src, re.S)
    assert call, "no qconv2d_nhwc schema in bindings.cpp"
    schema = "".join(re.findall(r'"([^"]*)"', call.group(1)))
    args = schema[schema.index("(") + 1:schema.rindex(") ->")]
    names = [a.split()[-1].split("=")[0] for a in args.split(",")]
    assert names == list(inspect.signature(emulate_kernel).parameters)


CASES = [  # n, c, h, w, k, r, stride, padding, dilation, groups
    (1, 64, 9, 7, 64, 3, 1, 1, 1, 1),
    (1, 3, 8, 9, 16, 3, 1, 1, 1, 1),  # the RGB first conv: 3 channels padded to 16
    (2, 5, 9, 11, 33, 3, 2, 1, 1, 1),  # channel and K tails, stride 2
    (1, 24, 7, 7, 18, 3, 1, 2, 2, 2),  # grouped (12 channels per group, padded to 16), dilation
    (2, 17, 6, 5, 40, 1, 1, 0, 1, 1),  # 1x1
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("zx", [0, 131])
@pytest.mark.parametrize("quant_out", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_launcher_matches_integer_reference(case, zx, quant_out, layout):
    n, c, h, w, k, r, st, pd, dl, g = case
    gen = torch.Generator().manual_seed(3)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c // g, r, r), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(k, generator=gen) * 0.01 + 0.001, torch.randn(k, generator=gen)
    p, q = (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (r - 1) - 1) // st + 1
    res = torch.randn(n, k, p, q, generator=gen)
    x = xq.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else xq
    o_scale = 0.05 if quant_out else 0.0
    y = qcuda.qconv2d(x, wq, ws, b, res, 0.02, zx, (st, st), (pd, pd), (dl, dl), g, "leaky_relu", 0.1, o_scale, 7,
                      kernel=emulate_kernel)
    expected = ref.qconv2d(xq, 0.02, zx, wq, ws, b, res, st, pd, dl, g, "leaky_relu", 0.1, o_scale, 7)
    assert y.shape == expected.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    if quant_out:
        assert y.dtype == torch.uint8
        assert (y.int() - expected.int()).abs().max() <= 1
    else:
        atol, rtol = tolerance(torch.float32, 1, expected.abs().max().item())
        torch.testing.assert_close(y.double(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("out_dtype", [torch.int8, torch.bfloat16])
def test_cuda_launcher_passes_other_types_and_a_uint8_residual(out_dtype):
    n, c, h, w, k, r, st, pd, dl, g = CASES[2]
    gen = torch.Generator().manual_seed(4)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c // g, r, r), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(k, generator=gen) * 0.01 + 0.001, torch.randn(k, generator=gen)
    p, q = (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (r - 1) - 1) // st + 1
    res = torch.randint(0, 256, (n, k, p, q), dtype=torch.uint8, generator=gen)
    o_scale, o_zp = (0.05, -9) if out_dtype == torch.int8 else (0.0, 0)
    y = qcuda.qconv2d(xq, wq, ws, b, res, 0.02, 5, (st, st), (pd, pd), (dl, dl), g, "relu", 0.1, o_scale, o_zp,
                      out_dtype, 0.03, 120, kernel=emulate_kernel)
    expected = ref.qconv2d(xq, 0.02, 5, wq, ws, b, ref.dequantize(res, 0.03, 120), st, pd, dl, g, "relu", 0.1,
                           o_scale, o_zp, out_dtype=out_dtype)
    assert y.dtype == out_dtype and y.shape == expected.shape
    if out_dtype == torch.int8:
        assert (y.int() - expected.int()).abs().max() <= 1
    else:
        torch.testing.assert_close(y.double(), expected, **tol("bf16_output"))


def test_packed_weight_and_sums_follow_in_place_changes():
    wq = torch.randint(-127, 128, (8, 3, 3, 3), dtype=torch.int8)
    wh, wsum = qcuda.pack_weight(wq)
    assert wh.shape == (8, 3, 3, 16) and wh[..., 3:].eq(0).all()  # channels padded with zero weights
    assert torch.equal(wsum, wq.int().sum((1, 2, 3)))
    assert qcuda.pack_weight(wq)[0] is wh  # cached while the weight is unchanged
    with torch.no_grad():
        wq.neg_()
    assert torch.equal(qcuda.pack_weight(wq)[1], -wsum)


def test_cuda_backend_reports_why_unavailable():
    from sft_kernels import backends

    if not torch.cuda.is_available():
        with pytest.raises(backends.BackendUnavailableError, match="cuda"):
            qcuda.qconv2d(torch.zeros(1, 16, 4, 4, dtype=torch.uint8), torch.zeros(8, 16, 1, 1, dtype=torch.int8),
                          torch.ones(8), None, None, 0.1, 0, (1, 1), (0, 0), (1, 1), 1, None, 0.01, 0.0, 0)
