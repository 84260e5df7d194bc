"""sft.qconv2d's other output types and the uint8 residual on every backend: int8 outputs (signed saturation, zero
points across [-128, 127]) within one step of the float64 reference and byte for byte the uint8 output moved by 128;
bfloat16 outputs equal to the float32 output rounded to nearest even; a uint8 residual with its own (scale, zero
point) equal to passing it dequantized; bad combinations say what is wrong."""
import pytest
import torch

from sft_kernels.ops import qconv2d
from sft_kernels.ops.qconv2d import reference as ref
from tests.conftest import op_backends

BACKENDS = op_backends("qconv2d", torch.uint8)
CASES = [(1, 16, 9, 11, 24, 3, 1, 1, 1), (2, 5, 8, 7, 33, 3, 2, 1, 1), (1, 32, 6, 6, 32, 3, 1, 1, 32)]


def _data(case, seed=0):
    n, c, h, w, k, r, st, pd, g = case
    gen = torch.Generator().manual_seed(seed)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c // g, r, r), dtype=torch.int8, generator=gen)
    ws = torch.rand(k, generator=gen) * 0.01 + 0.001
    return xq, wq, ws, torch.randn(k, generator=gen), gen


def _call(case, xq, wq, ws, b, backend, **kw):
    n, c, h, w, k, r, st, pd, g = case
    return qconv2d(xq, wq, ws, b, st, pd, 1, g, input_scale=0.02, input_zero_point=7, activation="leaky_relu",
                   negative_slope=0.1, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_int8_output_within_one_step_and_saturates_signed(backend, case):
    xq, wq, ws, b, _ = _data(case)
    n, c, h, w, k, r, st, pd, g = case
    exact = ref.qconv2d(xq, 0.02, 7, wq, ws, b, None, st, pd, 1, g, "leaky_relu", 0.1)
    ends = set()
    for scale, zp in ((0.05, 0), (0.01, -120), (0.01, 120), (10.0, -3)):  # both ends saturate somewhere
        y = _call(case, xq, wq, ws, b, backend, out_scale=scale, out_zero_point=zp, out_dtype=torch.int8)
        e = torch.clamp(torch.round(exact * (1 / scale)) + zp, -128, 127)
        assert y.dtype == torch.int8 and y.shape == exact.shape
        assert (y.int() - e.int()).abs().max().item() <= 1, (scale, zp)
        u = _call(case, xq, wq, ws, b, backend, out_scale=scale, out_zero_point=zp + 128)
        assert torch.equal(y.int(), u.int() - 128)
        ends |= {v for v in (-128, 127) if (y == v).any()}
    assert ends == {-128, 127}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bfloat16_output_is_the_float_output_rounded(backend, case):
    xq, wq, ws, b, _ = _data(case)
    y = _call(case, xq, wq, ws, b, backend, out_dtype=torch.bfloat16)
    f = _call(case, xq, wq, ws, b, backend, out_dtype=torch.float32)
    assert y.dtype == torch.bfloat16 and torch.equal(y, f.to(torch.bfloat16))
    assert torch.equal(f, _call(case, xq, wq, ws, b, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_uint8_residual_is_added_dequantized(backend, case):
    xq, wq, ws, b, gen = _data(case)
    n, c, h, w, k, r, st, pd, g = case
    shape = ref.qconv2d(xq, 0.02, 7, wq, ws, None, None, st, pd, 1, g).shape
    res = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    for out in (dict(), dict(out_scale=0.05, out_zero_point=100), dict(out_scale=0.05, out_zero_point=-5,
                                                                     out_dtype=torch.int8)):
        y = _call(case, xq, wq, ws, b, backend, residual=res, residual_quant=(0.03, 131), **out)
        want = _call(case, xq, wq, ws, b, backend, residual=(res.float() - 131) * 0.03, **out)
        assert torch.equal(y, want), out
    exact = ref.qconv2d(xq, 0.02, 7, wq, ws, b, (res.double() - 131) * 0.03, st, pd, 1, g, "leaky_relu", 0.1)
    torch.testing.assert_close(y.double() if y.is_floating_point() else _call(
        case, xq, wq, ws, b, backend, residual=res, residual_quant=(0.03, 131)).double(), exact, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kw,match", [
    (dict(out_dtype=torch.int8), "needs out_scale > 0"),
    (dict(out_dtype=torch.float16), "out_dtype must be one of"),
    (dict(out_dtype=torch.bfloat16, out_scale=0.05), "out_scale must be 0"),
    (dict(out_dtype=torch.int8, out_scale=0.05, out_zero_point=128), r"out_zero_point must be an int in \[-128, 127\]"),
    (dict(residual_quant=(0.1, 3)), "describes a uint8 residual"),
    (dict(residual_quant=0.1, residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "must be a \\(scale, zero_point"),
    (dict(residual_quant=(0.0, 3), residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "scale must be a positive"),
    (dict(residual_quant=(0.1, 300), residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), r"\[0, 255\]"),
    (dict(residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "residual must have dtype"),
])
def test_bad_combinations_say_what_is_wrong(kw, match):
    xq, wq, ws, b, _ = _data(CASES[0])
    with pytest.raises((ValueError, TypeError), match=match):
        _call(CASES[0], xq, wq, ws, b, None, **kw)
