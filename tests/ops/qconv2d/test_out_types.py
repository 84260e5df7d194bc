"""sft.qconv2d's other output types and the uint8 residual, written by the kernels' stores: int8 outputs (signed
saturation, zero points across [-128, 127]) within one step of the float64 reference and byte for byte the uint8
output moved by 128; bfloat16 outputs equal to the float32 output rounded to nearest even; a uint8 residual with its
own (scale, zero point) equal to passing it dequantized. Every backend in this process, and the cpu backend under
every int8 kernel this CPU can run (fresh processes), on shapes that reach each store: the dense tiles (a channel
tail), the few-channel kernel, the grouped and depthwise kernels, per-group calls, a 1×1 conv reading its input in
place, a float input with an SFT modulation, and the PixelShuffle store. Bad combinations say what is wrong."""
import pytest
import torch

from sft_kernels.ops import qconv2d
from sft_kernels.ops.qconv2d import reference as ref
from sft_kernels.testing import tol
from tests.conftest import int8_kernels, op_backends, run_with_int8_kernel

BACKENDS = op_backends("qconv2d", torch.uint8)
CASES = [  # n, c, h, w, k, r, stride, padding, groups
    (1, 16, 9, 11, 24, 3, 1, 1, 1),  # dense tiles, a partial panel
    (2, 5, 8, 7, 33, 3, 2, 1, 1),  # a channel tail past one panel, stride 2, channels padded to 4
    (1, 32, 6, 6, 32, 3, 1, 1, 32),  # depthwise
    (1, 8, 10, 9, 3, 3, 1, 1, 1),  # few output channels (pixels in the lanes on VNNI)
    (1, 32, 7, 6, 32, 3, 1, 1, 4),  # 8 channels a group: the grouped kernel on VNNI
    (1, 12, 5, 6, 6, 3, 1, 1, 3),  # groups the grouped kernel does not take: one call per group
    (1, 32, 8, 8, 40, 1, 1, 0, 1),  # 1×1 without padding: a uint8 input read in place
]


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


def _out_shape(case, xq, wq):
    n, c, h, w, k, r, st, pd, g = case
    return ref.qconv2d(xq, 0.02, 7, wq, torch.ones(k), None, None, st, pd, 1, g).shape


def check_int8_output(case, backend):
    """int8 outputs: within one step of the reference, the uint8 output's bytes moved by 128, both ends reached."""
    xq, wq, ws, b, _ = _data(case)
    n, c, h, w, k, r, st, pd, g = case
    exact = ref.qconv2d(xq, 0.02, 7, wq, ws, b, None, st, pd, 1, g, "leaky_relu", 0.1)
    ends = set()
    for scale, zp in ((0.05, 0), (0.01, -120), (0.01, 120), (10.0, -3)):  # both ends saturate somewhere
        y = _call(case, xq, wq, ws, b, backend, out_scale=scale, out_zero_point=zp, out_dtype=torch.int8)
        e = torch.clamp(torch.round(exact * (1 / scale)) + zp, -128, 127)
        assert y.dtype == torch.int8 and y.shape == exact.shape
        assert (y.int() - e.int()).abs().max().item() <= 1, (case, scale, zp)
        u = _call(case, xq, wq, ws, b, backend, out_scale=scale, out_zero_point=zp + 128)
        assert torch.equal(y.int(), u.int() - 128), (case, scale, zp)
        ends |= {v for v in (-128, 127) if (y == v).any()}
    assert ends == {-128, 127}, case


def check_bfloat16_output(case, backend):
    xq, wq, ws, b, gen = _data(case)
    y = _call(case, xq, wq, ws, b, backend, out_dtype=torch.bfloat16)
    f = _call(case, xq, wq, ws, b, backend, out_dtype=torch.float32)
    assert y.dtype == torch.bfloat16 and torch.equal(y, f.to(torch.bfloat16)), case
    assert torch.equal(f, _call(case, xq, wq, ws, b, backend))
    res = torch.randn(_out_shape(case, xq, wq), generator=gen)  # with a float residual too
    y = _call(case, xq, wq, ws, b, backend, residual=res, out_dtype=torch.bfloat16)
    assert torch.equal(y, _call(case, xq, wq, ws, b, backend, residual=res).to(torch.bfloat16)), case


def check_uint8_residual(case, backend):
    xq, wq, ws, b, gen = _data(case)
    n, c, h, w, k, r, st, pd, g = case
    res = torch.randint(0, 256, _out_shape(case, xq, wq), dtype=torch.uint8, generator=gen)
    for out in (dict(), dict(out_scale=0.05, out_zero_point=100), dict(out_scale=0.05, out_zero_point=-5,
                                                                     out_dtype=torch.int8),
                dict(out_dtype=torch.bfloat16)):
        y = _call(case, xq, wq, ws, b, backend, residual=res, residual_quant=(0.03, 131), **out)
        want = _call(case, xq, wq, ws, b, backend, residual=(res.float() - 131) * 0.03, **out)
        assert torch.equal(y, want), (case, out)
    y = _call(case, xq, wq, ws, b, backend, residual=res, residual_quant=(0.03, 131))
    exact = ref.qconv2d(xq, 0.02, 7, wq, ws, b, (res.double() - 131) * 0.03, st, pd, 1, g, "leaky_relu", 0.1)
    torch.testing.assert_close(y.double(), exact, **tol("int8_epilogue"))


def check_saturation(case, backend):
    """A tiny out_scale puts outputs past int32's range: they saturate to the type's ends, as in the reference."""
    xq, wq, ws, b, gen = _data(case)
    n, c, h, w, k, r, st, pd, g = case
    res = torch.randn(_out_shape(case, xq, wq), generator=gen)
    exact = ref.qconv2d(xq, 0.02, 7, wq, ws, b, res, st, pd, 1, g, "leaky_relu", 0.1)
    for dtype, zp, lo, hi in ((None, 3, 0, 255), (torch.int8, -3, -128, 127)):
        y = _call(case, xq, wq, ws, b, backend, residual=res, out_scale=1e-12, out_zero_point=zp, out_dtype=dtype)
        want = torch.where(exact > 0, hi, torch.where(exact < 0, lo, zp))
        assert torch.equal(y.int(), want.int()), (case, dtype)


def check_modulated_and_shuffled(backend):
    """A float input with an SFT modulation, and the PixelShuffle(2) store (128 channels: whole 32-channel runs per
    sub-pixel), in each output type."""
    gen = torch.Generator().manual_seed(3)
    x, ms, mt = (torch.randn(1, 16, 6, 7, generator=gen) for _ in range(3))
    wq = torch.randint(-127, 128, (128, 16, 3, 3), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(128, generator=gen) * 0.01 + 0.001, torch.randn(128, generator=gen)
    kw = dict(input_scale=0.05, input_zero_point=128, activation="relu", backend=backend)
    for extra in (dict(modulation=(ms, mt)), dict(pixel_shuffle=2)):
        u = qconv2d(x, wq, ws, b, 1, 1, **kw, **extra, out_scale=0.02, out_zero_point=140)
        s = qconv2d(x, wq, ws, b, 1, 1, **kw, **extra, out_scale=0.02, out_zero_point=12, out_dtype=torch.int8)
        assert torch.equal(s.int(), u.int() - 128), extra
        f = qconv2d(x, wq, ws, b, 1, 1, **kw, **extra)
        h = qconv2d(x, wq, ws, b, 1, 1, **kw, **extra, out_dtype=torch.bfloat16)
        assert torch.equal(h, f.to(torch.bfloat16)), extra


# int8 outputs within one step and saturating signed; bfloat16 outputs the float output rounded; a uint8 residual
# added dequantized; outputs past int32's range saturating
CHECKS = [check_int8_output, check_bfloat16_output, check_uint8_residual, check_saturation]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_each_type_on_each_store(check, backend, case):
    check(case, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_modulated_and_shuffled_outputs(backend):
    check_modulated_and_shuffled(backend)


def test_bfloat16_store_rounds_ties_to_even_and_keeps_nan_inf():
    """Outputs placed exactly on bfloat16 ties (and ±inf, NaN through the bias) round as torch's cast does."""
    if "cpu" not in BACKENDS:
        pytest.skip("the cpu extension did not build")
    xq = torch.full((1, 4, 1, 3), 7, dtype=torch.uint8)  # x − zx = 0: each output is its bias
    wq = torch.ones(40, 4, 1, 1, dtype=torch.int8)
    ties = torch.tensor([1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, -(1.0 + 2.0 ** -8), 2.0 ** -9 * 3])
    bias = torch.cat([ties, torch.tensor([float("inf"), float("-inf"), float("nan")]), torch.randn(33)])
    for backend in BACKENDS:
        y = qconv2d(xq, wq, torch.ones(40), bias, input_scale=1.0, input_zero_point=7, out_dtype=torch.bfloat16,
                    backend=backend)
        want = bias.to(torch.bfloat16).view(1, 40, 1, 1).expand(1, 40, 1, 3)
        nan = torch.isnan(want)  # any NaN (torch's cast writes 0xFFFF, c10::BFloat16 0x7FC0)
        assert torch.equal(torch.isnan(y), nan), backend
        assert torch.equal(y.view(torch.int16)[~nan], want.view(torch.int16)[~nan]), backend


@pytest.mark.parametrize("kernel", int8_kernels())
def test_every_int8_kernel_stores_each_type(kernel):
    code = ("import torch\n"
            "from tests.ops.qconv2d.test_out_types import CASES, CHECKS, check_modulated_and_shuffled\n"
            "for case in CASES:\n"
            "    for check in CHECKS:\n"
            "        check(case, 'cpu')\n"
            "check_modulated_and_shuffled('cpu')\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.parametrize("kw,match", [
    (dict(out_dtype=torch.int8), "needs out_scale > 0"),
    (dict(out_dtype=torch.float16), "out_dtype must be one of"),
    (dict(out_dtype=torch.bfloat16, out_scale=0.05), "out_scale must be 0"),
    (dict(out_dtype=torch.int8, out_scale=0.05, out_zero_point=128), r"out_zero_point must be an int in \[-128, 127\]"),
    (dict(out_scale=0.05, out_zero_point=-1), r"out_zero_point must be an int in \[0, 255\]"),
    (dict(residual_quant=(0.1, 3)), "describes a uint8 residual"),
    (dict(residual_quant=0.1, residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "must be a \\(scale, zero_point"),
    (dict(residual_quant=(0.0, 3), residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "scale must be a positive"),
    (dict(residual_quant=(0.1, 300), residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), r"\[0, 255\]"),
    (dict(residual=torch.zeros(1, 24, 9, 11, dtype=torch.uint8)), "residual must have dtype"),
    (dict(residual_quant=(0.1, 3), residual=torch.zeros(1, 24, 9, 10, dtype=torch.uint8)), "the output's shape"),
])
def test_bad_combinations_say_what_is_wrong(kw, match):
    xq, wq, ws, b, _ = _data(CASES[0])
    with pytest.raises((ValueError, TypeError), match=match):
        _call(CASES[0], xq, wq, ws, b, None, **kw)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
@pytest.mark.parametrize("extra,match", [
    (dict(out_scale=0.05, out_zero_point=200, out_dtype=torch.int8), r"out_zero_point must lie in \[-128, 127\]"),
    (dict(out_scale=0.0, out_zero_point=0, out_dtype=torch.int8), "out_dtype must be uint8 or int8 with out_scale"),
    (dict(out_scale=0.05, out_zero_point=0, out_dtype=torch.float16), "out_dtype must be uint8 or int8"),
    (dict(out_scale=0.05, out_zero_point=0, res=torch.uint8), "residual must be Float"),
    (dict(out_scale=0.05, out_zero_point=0, res=torch.float32, res_scale=0.1), "residual must be Byte"),
    (dict(out_scale=0.05, out_zero_point=0, res=torch.uint8, res_scale=0.1, res_zero_point=300), r"\[0, 255\]"),
])
def test_the_cpu_op_checks_types_itself(extra, match):
    """torch.ops.sft_cpu.qconv2d called directly (as a torch.compile graph or a C++ caller would) checks the types."""
    from sft_kernels.ops.qconv2d import cpu as qcpu

    xq, wq, ws, b, _ = _data(CASES[0])
    packed, wsum = qcpu.split_packed(wq, wq.shape[0])
    res_dtype = extra.pop("res", None)
    res = None if res_dtype is None else torch.zeros(1, 24, 9, 11, dtype=res_dtype)
    o_scale, o_zp = extra.pop("out_scale"), extra.pop("out_zero_point")
    with pytest.raises(RuntimeError, match=match):
        torch.ops.sft_cpu.qconv2d(xq, 0.02, 7, packed, wsum, ws, b, 3, 3, [1, 1], [1, 1], [1, 1], 0, 0.0, res, o_scale,
                                  o_zp, **extra)
