"""sft.qconv2d_winograd (int8 3×3 conv in the Winograd domain): every backend and int8 kernel path against the
float64 reference (exact integer sums; float32 outputs to rounding, uint8 ones within one step) on shapes that take
each path (odd sizes: tiles past the edge; channel counts padded to 4-byte groups; output-channel tails; batches;
NCHW and float inputs; every epilogue; PixelShuffle); the transforms and the calibration; closeness to the float
conv; opcheck; bad inputs."""
import pytest
import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.ops.qconv2d_winograd import calibrate_mult, reference as ref, winograd_weight
from tests.conftest import int8_kernels, op_backends, run_with_int8_kernel

BACKENDS = op_backends("qconv2d_winograd", torch.uint8)
CASES = [  # n, c, h, w, k
    (1, 64, 12, 10, 64),
    (2, 18, 9, 11, 40),  # channels padded (18 -> 20), a K tail, odd sizes: tiles past the bottom and right edges
    (1, 32, 1, 1, 8),  # one output pixel: one tile, mostly padding
    (1, 16, 5, 31, 97),  # 16 tiles a row (blocks of 14 span rows), three panels
]
KW = dict(input_scale=0.03, input_zero_point=33)


def _data(case, seed=0):
    n, c, h, w, k = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    u_q, u_scale = winograd_weight(torch.randn(k, c, 3, 3, generator=g) * 0.05)
    return x, u_q, u_scale, calibrate_mult([x], 33), torch.randn(k, generator=g) * 0.1


def _close(y, e):
    if y.dtype == torch.uint8:
        assert (y.int() - e.int()).abs().max() <= 1
        assert (y != e).float().mean() < 0.01
    else:
        assert (y.double() - e.double()).abs().max() <= 1e-5 * max(1.0, e.double().abs().max())


EPILOGUES = {
    "float": dict(),
    "relu_uint8": dict(activation="relu", out_scale=0.05, out_zero_point=3),
    "leaky_residual": dict(activation="leaky_relu", negative_slope=0.1),
    "uint8_residual": dict(out_scale=0.04, out_zero_point=128),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("epilogue", list(EPILOGUES))
def test_matches_reference(backend, case, epilogue):
    x, u_q, u_scale, mult, b = _data(case)
    kw = dict(EPILOGUES[epilogue])
    n, _, h, w, k = case
    if epilogue == "leaky_residual":
        kw["residual"] = torch.randn(n, k, h, w)
    if epilogue == "uint8_residual":
        kw.update(residual=torch.randint(0, 256, (n, k, h, w), dtype=torch.uint8), residual_quant=(0.02, 120))
    y = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend=backend, **KW, **kw)
    e = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="reference", **KW, **kw)
    assert y.shape == (n, k, h, w) and y.dtype == e.dtype
    _close(y, e)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k, r, with_residual", [(128, 2, False), (32, 2, False), (72, 3, False), (128, 2, True)],
                         ids=["in-store", "8-channel-subpixels", "r3", "residual"])
def test_float_nchw_input_and_pixel_shuffle(backend, k, r, with_residual):
    """PixelShuffle: in the store (16-channel vectors within a sub-pixel, no residual), else after the conv."""
    x, u_q, u_scale, mult, b = _data((1, 24, 7, 9, k))
    xf = (x.float() - 33) * 0.03  # quantized back to x in the kernel's input copy
    res = torch.randn(1, k, 7, 9) if with_residual else None
    kw = dict(activation="relu", out_scale=0.05, out_zero_point=0, residual=res)
    e = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="reference", **KW, **kw)
    # the shuffled op takes the residual shaped like its output, as sft.conv2d does
    kw["residual"] = None if res is None else F.pixel_shuffle(res, r)
    y = ops.qconv2d_winograd(xf, u_q, u_scale, mult, b, pixel_shuffle=r, backend=backend, **KW, **kw)
    assert y.shape == (1, k // (r * r), 7 * r, 9 * r) and y.is_contiguous()  # NCHW in, NCHW out (as F.conv2d)
    _close(y, F.pixel_shuffle(e, r))
    xl = x.contiguous(memory_format=torch.channels_last)
    yl = ops.qconv2d_winograd(xl, u_q, u_scale, mult, b, pixel_shuffle=r, backend=backend, **KW, **kw)
    assert yl.is_contiguous(memory_format=torch.channels_last)
    _close(yl, F.pixel_shuffle(e, r))


@pytest.mark.parametrize("kernel", int8_kernels())
def test_every_int8_kernel_path(kernel):
    """Each int8 kernel forced in a fresh process (VNNI / AMX CPUs: the AVX-512 transforms and VNNI sums; others
    the portable ones) against the reference."""
    code = ("import torch\n"
            "from sft_kernels.ops import qconv2d_winograd\n"
            "from sft_kernels.ops.qconv2d import cpu\n"
            "from sft_kernels.ops.qconv2d_winograd import calibrate_mult, winograd_weight\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "g = torch.Generator().manual_seed(2)\n"
            "for n, c, h, w, k in ((2, 20, 9, 8, 35), (1, 64, 7, 37, 64), (1, 80, 6, 5, 48)):\n"
            "    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    uq, us = winograd_weight(torch.randn(k, c, 3, 3, generator=g) * 0.05)\n"
            "    m, b = calibrate_mult([x], 10), torch.randn(k, generator=g)\n"
            "    for kw in ({}, dict(activation='relu', out_scale=0.05, out_zero_point=4)):\n"
            "        y = qconv2d_winograd(x, uq, us, m, b, input_scale=0.02, input_zero_point=10, backend='cpu',\n"
            "                             **kw)\n"
            "        e = qconv2d_winograd(x, uq, us, m, b, input_scale=0.02, input_zero_point=10,\n"
            "                             backend='reference', **kw)\n"
            "        assert (y.double() - e.double()).abs().max() <= (1 if kw else 1e-5 * e.abs().max()), (c, k)\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    """A batch of 0 images gives an empty output of the right shape on every backend (the reference had failed to
    reshape it)."""
    x, u_q, u_scale, mult, b = _data(CASES[1])
    y = ops.qconv2d_winograd(x[:0], u_q, u_scale, mult, b, backend=backend, **KW)
    assert y.shape == (0, 40, 9, 11)


def test_transforms_and_requantization():
    w = torch.randn(8, 5, 3, 3, dtype=torch.float64)
    u_q, u_scale = winograd_weight(w)
    u = (ref.G @ w @ ref.G.T).permute(2, 3, 0, 1).reshape(16, 8, 5)
    assert u_q.dtype == torch.int8 and u_q.abs().max() == 127
    assert ((u_q.double() * u_scale.double().unsqueeze(2) - u).abs() <= u_scale.double().unsqueeze(2) / 2 + 1e-9).all()
    # inputs whose tiles all fit in int8 get multipliers that keep them exact (2^15 - 1: q = v for |v| < 2^14)
    x = torch.randint(30, 34, (1, 4, 8, 8), dtype=torch.uint8)
    mult = calibrate_mult([x], 32)
    assert (mult == 32767).all()
    v = ref.input_tiles(x, 32)
    assert torch.equal(ref.requantize_tiles(v, mult), v)
    # the saturating, rounding shift of vpmulhrsw: ⌊(v·m + 2^14) / 2^15⌋ clamped to int8
    q = ref.requantize_tiles(torch.tensor([1000.0, -1000.0, 100.0, -3.0]), torch.tensor(8192))
    assert q.tolist() == [127.0, -128.0, 25.0, -1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_to_the_float_conv_on_smooth_maps(backend):
    """The scheme is a conv: on a smooth map (an image's statistics) the output is within a few per cent of the
    float conv of the same quantized input."""
    g = torch.Generator().manual_seed(3)
    base = F.interpolate(torch.rand(1, 32, 6, 6, generator=g), size=(24, 24), mode="bilinear", align_corners=False)
    x = torch.clamp(torch.round(base * 200) + 20, 0, 255).to(torch.uint8)
    w = torch.randn(32, 32, 3, 3, generator=g) * 0.05
    u_q, u_scale = winograd_weight(w)
    y = ops.qconv2d_winograd(x, u_q, u_scale, calibrate_mult([x], 20), None, input_scale=0.01, input_zero_point=20,
                             backend=backend)
    f = F.conv2d((x.float() - 20) * 0.01, w, padding=1)
    assert ((y - f).norm() / f.norm()).item() < 0.03


def test_opcheck_and_compile():
    x, u_q, u_scale, mult, b = _data((1, 16, 5, 6, 8))
    for backend in BACKENDS:
        torch.library.opcheck(torch.ops.sft.qconv2d_winograd.default,
                              (x, u_q, u_scale, mult, b, None, 0.03, 33, "relu", 0.01, 0.05, 0, 1, 0.0, 0, backend))
    f = torch.compile(lambda x: ops.qconv2d_winograd(x, u_q, u_scale, mult, b, activation="relu", **KW),
                      fullgraph=True)
    e = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, activation="relu", backend="reference", **KW)
    _close(f(x), e)


@pytest.mark.parametrize("bad, match", [
    (dict(weight=torch.zeros(16, 8, 7, dtype=torch.int8)), "transformed int8 weight"),
    (dict(weight=torch.zeros(9, 8, 16, dtype=torch.int8)), "transformed int8 weight"),
    (dict(weight_scale=torch.zeros(16, 8)), "positive scales"),
    (dict(mult=torch.zeros(16, dtype=torch.int32)), "Q15 multipliers"),
    (dict(mult=torch.full((16,), 40000, dtype=torch.int32)), "Q15 multipliers"),
    (dict(bias=torch.zeros(5)), "bias must have 8"),
    (dict(residual=torch.zeros(1, 8, 4, 4)), "residual must have the output's shape"),
    (dict(input_zero_point=300), "input_zero_point"),
    (dict(pixel_shuffle=3), "pixel_shuffle"),
])
def test_bad_inputs(bad, match):
    x, u_q, u_scale, mult, b = _data((1, 16, 5, 6, 8))
    args = dict(weight=u_q, weight_scale=u_scale, mult=mult, bias=b, input_scale=0.03, input_zero_point=33)
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.qconv2d_winograd(x, **args)


def test_too_few_channels():
    x = torch.zeros(1, 8, 4, 4, dtype=torch.uint8)
    u_q, u_scale = winograd_weight(torch.randn(4, 8, 3, 3))
    with pytest.raises(ValueError, match="at least 16 input channels"):
        ops.qconv2d_winograd(x, u_q, u_scale, torch.full((16,), 100, dtype=torch.int32), input_scale=0.1,
                             input_zero_point=0)


def test_tile_range_is_the_exact_range_of_the_quantized_tiles():
    """quantize_ keeps only tile_range of each float calibration input (quantized as the kernel quantizes it, channels
    a chunk at a time): the same multipliers as calibrate_mult on the whole uint8 map, clamped values included."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 24, 11, 13, generator=g) * 0.7 + 0.2  # many values past the uint8 range: clamped
    scale, zp = 0.01, 90
    from sft_kernels.ops.qconv2d.reference import quantize

    exact = calibrate_mult([quantize(x, scale, zp)], zp)
    assert torch.equal(ref.mult_for_range(ref.tile_range(x, scale, zp, chunk=5)), exact)


@pytest.mark.parametrize("out_scale", [0.0, 0.05], ids=["float", "uint8"])
@pytest.mark.parametrize("k, with_residual", [(44, False), (128, True)], ids=["11-channel-subpixels", "residual"])
def test_one_row_pixel_shuffle_after_the_conv(out_scale, k, with_residual):
    """A one-row image shuffled after the conv (shuffle_sub_pixels: its rows had come back strided and failed a
    view; float32 outputs take its 8-byte-word path, uint8 ones with 11-channel sub-pixels the other)."""
    x, u_q, u_scale, mult, b = _data((2, 36, 1, 24, k))
    res = torch.randn(2, k, 1, 24) if with_residual else None
    kw = dict(out_scale=out_scale, out_zero_point=5 if out_scale else 0, residual=res)
    e = F.pixel_shuffle(ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="reference", **KW, **kw), 2)
    kw["residual"] = None if res is None else F.pixel_shuffle(res, 2)  # shaped like the shuffled output
    for backend in BACKENDS:
        y = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, pixel_shuffle=2, backend=backend, **KW, **kw)
        assert y.shape == (2, k // 4, 2, 48)
        _close(y, e)


@pytest.mark.parametrize("case", CASES + [(2, 20, 1, 1, 16), (1, 16, 2, 7, 32)], ids=str)
def test_channels_last_uint8_read_in_place(case):
    """A channels_last uint8 input with whole 4-byte channel groups is read in place (edge tiles from a padded
    patch): the same result as the NCHW input, which takes the padded copy."""
    x, u_q, u_scale, mult, b = _data(case)
    n, _, h, w, k = case
    xl = x.contiguous(memory_format=torch.channels_last)
    kw = dict(activation="relu", out_scale=0.05, out_zero_point=3,
              residual=torch.randint(0, 256, (n, k, h, w), dtype=torch.uint8), residual_quant=(0.02, 120))
    e = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="reference", **KW, **kw)
    for backend in BACKENDS:
        y = ops.qconv2d_winograd(xl, u_q, u_scale, mult, b, backend=backend, **KW, **kw)
        assert y.is_contiguous(memory_format=torch.channels_last)
        _close(y, e)
