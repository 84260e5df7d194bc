"""sft.qconv2d on every backend: integer sums exact against the int64-exact reference (float outputs within the
float32 epilogue's rounding), requantized outputs within one step, on odd shapes, strides, dilation, padding, the
3-channel first conv, channel tails, zero points 0 and not 0, saturation at both ends, residuals and activations;
the portable path under a forced ISA; bad inputs."""
import pytest
import torch
import torch.nn.functional as F

from sft_kernels.ops import qconv2d
from sft_kernels.ops.qconv2d import reference as ref
from sft_kernels.testing import tolerance
from tests.conftest import int8_kernels, op_backends, run_fresh, run_with_int8_kernel

BACKENDS = op_backends("qconv2d", torch.uint8)
CASES = [  # n, c, h, w, k, r, stride, padding, dilation, groups
    (1, 64, 12, 10, 64, 3, 1, 1, 1, 1),
    (2, 5, 9, 11, 33, 3, 2, 1, 1, 1),  # channel tail (5 -> 8), K tail (33)
    (1, 3, 8, 8, 16, 3, 1, 1, 1, 1),  # the RGB first conv
    (1, 17, 7, 9, 40, 1, 1, 0, 1, 1),  # 1x1
    (2, 24, 9, 11, 40, 1, 2, 0, 1, 1),  # strided 1x1 (cpu: a stride-1 conv on the subsampled view)
    (1, 8, 10, 10, 8, 3, 1, 2, 2, 1),  # dilation
    (2, 12, 9, 9, 20, 5, 1, 2, 1, 1),  # 5x5
    (1, 8, 7, 7, 8, 3, 1, 1, 1, 2),  # grouped: the dense cpu kernel per group
    (1, 33, 9, 11, 33, 3, 1, 1, 1, 33),  # depthwise (cpu: its own kernel), a channel tail past 32
    (2, 16, 10, 9, 16, 3, 2, 1, 1, 16),  # depthwise, stride 2
    (1, 24, 12, 10, 24, 5, 1, 4, 2, 24),  # depthwise 5x5, dilation 2
    # depthwise 5×5 and 7×7 (cpu, AVX-512: input pixels shared by neighbouring outputs, groups of 8/4/2/1 pixels),
    # stride 1 and 2, channel tails, rows of 7, 13 and 19 pixels
    (1, 40, 11, 13, 40, 7, 1, 3, 1, 40),
    (2, 24, 12, 15, 24, 5, 2, 2, 1, 24),
    (1, 70, 7, 7, 70, 7, 1, 3, 1, 70),
    (1, 96, 9, 37, 96, 7, 2, 3, 1, 96),
    (1, 16, 7, 7, 32, 3, 1, 1, 1, 8),  # grouped, 2 channels in and 4 out per group
    # groups of 4-32 channels in and out (VNNI: vectors over whole groups): a channel tail (K = 12, 40), stride 2,
    # 5×5 with dilation, pixels in tails of a 12-pixel tile
    (2, 12, 9, 11, 12, 3, 1, 1, 1, 3),
    (1, 40, 8, 9, 40, 3, 2, 1, 1, 5),
    (1, 48, 7, 10, 48, 5, 1, 4, 2, 3),
    (2, 64, 6, 7, 64, 3, 1, 1, 1, 2),
]


def _data(case, zx, seed=0):
    n, c, h, w, k, r, st, pd, dl, g = case
    gen = torch.Generator().manual_seed(seed)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c // g, r, r), dtype=torch.int8, generator=gen)
    ws = torch.rand(k, generator=gen) * 0.01 + 0.001
    return xq, wq, ws, torch.randn(k, generator=gen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("zx", [0, 131])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_float_output_matches_reference(backend, case, zx, layout):
    n, c, h, w, k, r, st, pd, dl, g = case
    xq, wq, ws, b = _data(case, zx)
    x = xq.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else xq
    y = qconv2d(x, wq, ws, b, st, pd, dl, g, input_scale=0.02, input_zero_point=zx, activation="leaky_relu",
                negative_slope=0.1, backend=backend)
    expected = ref.qconv2d(xq, 0.02, zx, wq, ws, b, None, st, pd, dl, g, "leaky_relu", 0.1)
    assert y.dtype == torch.float32 and y.shape == expected.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    atol, rtol = tolerance(torch.float32, 1, expected.abs().max().item())  # integer sums: only the epilogue rounds
    torch.testing.assert_close(y.double(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_requantized_output_within_one_step_and_saturates(backend, case):
    n, c, h, w, k, r, st, pd, dl, g = case
    xq, wq, ws, b = _data(case, 9)
    res = torch.randn(n, k, *ref.qconv2d(xq, 0.02, 9, wq, ws, None, None, st, pd, dl).shape[2:])
    for out_scale, zo in ((0.05, 3), (0.01, 250), (10.0, 0)):  # saturates at 255, at 0, and coarse
        y = qconv2d(xq, wq, ws, b, st, pd, dl, input_scale=0.02, input_zero_point=9, activation="relu",
                    residual=res, out_scale=out_scale, out_zero_point=zo, backend=backend)
        expected = ref.qconv2d(xq, 0.02, 9, wq, ws, b, res, st, pd, dl, 1, "relu", 0.01, out_scale, zo)
        assert y.dtype == torch.uint8
        assert (y.int() - expected.int()).abs().max().item() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES[:6], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_float_input_is_quantized_on_the_way_in(backend, case, layout):
    n, c, h, w, k, r, st, pd, dl, g = case
    _, wq, ws, b = _data(case, 0)
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(3)) * 2
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    x[0, 0, 0, 0] = 1e12  # saturates (and stays in int32 on the way)
    y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.03, input_zero_point=120, backend=backend)
    expected = ref.qconv2d(x, 0.03, 120, wq, ws, b, None, st, pd, dl)
    atol, rtol = tolerance(torch.float32, 1, expected.abs().max().item())
    torch.testing.assert_close(y.double(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("kernel", int8_kernels())
def test_every_cpu_kernel_matches_the_integer_reference(kernel):
    """Each tile kernel (AMX, VNNI, AVX2, portable) forced in a fresh process, on shapes that take each of its paths:
    channel counts under and over the AMX threshold, tails of pixels and channels, stride 2, small images (AMX
    blocks over the padded-width grid), float and uint8 inputs; then the depthwise kernel's path for that ISA
    (channel tails, stride 2) and a grouped conv (the dense kernel per group)."""
    code = ("import torch\n"
            "from sft_kernels.ops import qconv2d\n"
            "from sft_kernels.ops.qconv2d import cpu, reference as ref\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "g = torch.Generator().manual_seed(1)\n"
            "for n, c, h, w, k, st in ((2, 13, 9, 8, 35, 2), (1, 64, 7, 37, 64, 1), (1, 80, 6, 19, 48, 2),\n"
            "                          (1, 3, 9, 9, 8, 1), (1, 16, 5, 33, 97, 1), (2, 64, 7, 7, 40, 1),\n"
            "                          (1, 128, 14, 14, 64, 1)):\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wq = torch.randint(-128, 128, (k, c, 3, 3), dtype=torch.int8, generator=g)\n"
            "    ws = torch.rand(k, generator=g) * 0.01 + 0.001\n"
            "    for x in (xq, xq.float() * 0.03 - 1.0):\n"
            "        y = qconv2d(x, wq, ws, None, st, 1, input_scale=0.03, input_zero_point=33, backend='cpu')\n"
            "        e = ref.qconv2d(x, 0.03, 33, wq, ws, None, None, st, 1)\n"
            "        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), (n, c, h, w, k, st)\n"
            "    b, res = torch.randn(k, generator=g), torch.randn(e.shape, generator=g)\n"
            "    for act in ('relu', 'leaky_relu', 'relu6', 'silu', 'hardswish', 'gelu', 'gelu_tanh'):\n"
            "        y = qconv2d(xq, wq, ws, b, st, 1, input_scale=0.03, input_zero_point=33, activation=act,\n"
            "                    negative_slope=0.1, residual=res, backend='cpu')\n"
            "        e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, res, st, 1, 1, 1, act, 0.1)\n"
            "        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), (act, c, k)\n"
            "        y = qconv2d(xq, wq, ws, b, st, 1, input_scale=0.03, input_zero_point=33, activation=act,\n"
            "                    negative_slope=0.1, residual=res, out_scale=0.05, out_zero_point=100, backend='cpu')\n"
            "        e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, res, st, 1, 1, 1, act, 0.1, 0.05, 100)\n"
            "        assert (y.int() - e.int()).abs().max() <= 1, (act, c, k)\n"
            "for n, c, h, w, st, r in ((1, 33, 10, 19, 1, 7), (2, 20, 9, 14, 2, 5), (1, 64, 7, 7, 1, 7),\n"
            "                          (1, 48, 11, 23, 2, 7), (1, 16, 8, 9, 1, 3)):  # depthwise, wide kernels\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wq = torch.randint(-128, 128, (c, 1, r, r), dtype=torch.int8, generator=g)\n"
            "    ws, b = torch.rand(c, generator=g) * 0.01 + 0.001, torch.randn(c, generator=g)\n"
            "    y = qconv2d(xq, wq, ws, b, st, r // 2, 1, c, input_scale=0.03, input_zero_point=33, backend='cpu')\n"
            "    e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, None, st, r // 2, 1, c)\n"
            "    assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), ('depthwise', c, r, st)\n"
            "for n, c, h, w, st, grp, k in ((2, 40, 9, 8, 1, 40, 40), (1, 19, 7, 9, 2, 19, 19),\n"
            "                               (1, 24, 6, 7, 1, 6, 12), (2, 12, 9, 17, 1, 3, 12),\n"
            "                               (1, 40, 7, 9, 2, 5, 40), (1, 48, 6, 13, 1, 3, 48),\n"
            "                               (1, 64, 5, 14, 2, 2, 64)):  # 4-32 channels per group\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wq = torch.randint(-128, 128, (k, c // grp, 3, 3), dtype=torch.int8, generator=g)\n"
            "    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)\n"
            "    for x in (xq, xq.float() * 0.03 - 1.0):\n"
            "        y = qconv2d(x, wq, ws, b, st, 1, 1, grp, input_scale=0.03, input_zero_point=33,\n"
            "                    activation='leaky_relu', negative_slope=0.1, backend='cpu')\n"
            "        e = ref.qconv2d(x, 0.03, 33, wq, ws, b, None, st, 1, 1, grp, 'leaky_relu', 0.1)\n"
            "        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), ('grouped', c, grp)\n"
            "    y = qconv2d(xq, wq, ws, b, st, 1, 1, grp, input_scale=0.03, input_zero_point=33, out_scale=0.05,\n"
            "                out_zero_point=100, backend='cpu')\n"
            "    e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, None, st, 1, 1, grp, None, 0.01, 0.05, 100)\n"
            "    assert (y.int() - e.int()).abs().max() <= 1, ('grouped uint8', c, grp)\n")
    run_with_int8_kernel(kernel, code)


SHUFFLE_CASES = [  # n, c, h, w, k, r (kernel), shuffle: k / shuffle² a multiple of 32 (VNNI: shuffled in the store)
    (1, 16, 9, 11, 128, 3, 2), (2, 8, 5, 7, 288, 1, 3),
    (1, 12, 6, 5, 48, 3, 2),  # 12 channels per sub-pixel: shuffled after the conv
    (2, 12, 1, 6, 48, 3, 2),  # one row, shuffled after the conv (its rows had come back strided)
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SHUFFLE_CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pixel_shuffle_matches_the_shuffled_reference(backend, case, layout):
    n, c, h, w, k, r, sh = case
    xq, wq, ws, b = _data((n, c, h, w, k, r, 1, r // 2, 1, 1), 7)
    x = xq.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else xq
    for out in ((0.05, 100), (0.0, 0)):
        y = qconv2d(x, wq, ws, b, 1, r // 2, input_scale=0.02, input_zero_point=7, activation="relu",
                    out_scale=out[0], out_zero_point=out[1], pixel_shuffle=sh, backend=backend)
        e = F.pixel_shuffle(ref.qconv2d(xq, 0.02, 7, wq, ws, b, None, 1, r // 2, 1, 1, "relu", 0.01, *out), sh)
        assert y.shape == e.shape == (n, k // (sh * sh), h * sh, w * sh)
        assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                               else torch.contiguous_format)
        if out[0] > 0:
            assert (y.int() - e.int()).abs().max() <= 1
        else:
            atol, rtol = tolerance(torch.float32, 1, e.abs().max().item())
            torch.testing.assert_close(y.double(), e, atol=atol, rtol=rtol)
    res = torch.randn(n, k // (sh * sh), h * sh, w * sh)  # a residual: shaped like the output, as in sft.conv2d
    y = qconv2d(x, wq, ws, b, 1, r // 2, input_scale=0.02, input_zero_point=7, residual=res, pixel_shuffle=sh,
                backend=backend)
    e = F.pixel_shuffle(ref.qconv2d(xq, 0.02, 7, wq, ws, b, None, 1, r // 2), sh) + res.double()
    atol, rtol = tolerance(torch.float32, 1, e.abs().max().item())
    torch.testing.assert_close(y.double(), e, atol=atol, rtol=rtol)


@pytest.mark.parametrize("kernel", int8_kernels())
def test_pixel_shuffle_on_every_cpu_kernel(kernel):
    """The shuffled store (VNNI: whole 32-channel panels per sub-pixel, tiles crossing row ends, a banded 4 MB
    input) and the shuffle after the conv (other kernels) in fresh processes."""
    code = ("import torch, torch.nn.functional as F\n"
            "from sft_kernels.ops import qconv2d\n"
            "from sft_kernels.ops.qconv2d import cpu, reference as ref\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "g = torch.Generator().manual_seed(2)\n"
            "for n, c, h, w, k, sh in ((1, 16, 9, 11, 128, 2), (2, 8, 5, 13, 288, 3), (1, 64, 260, 256, 128, 2)):\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wq = torch.randint(-128, 128, (k, c, 3, 3), dtype=torch.int8, generator=g)\n"
            "    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)\n"
            "    y = qconv2d(xq, wq, ws, b, 1, 1, input_scale=0.03, input_zero_point=33, activation='relu',\n"
            "                out_scale=0.05, out_zero_point=9, pixel_shuffle=sh, backend='cpu')\n"
            "    e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, None, 1, 1, 1, 1, 'relu', 0.01, 0.05, 9)\n"
            "    e = F.pixel_shuffle(e, sh)\n"
            "    assert (y.int() - e.int()).abs().max() <= 1, (c, k, sh)\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("st,dl", [(1, 1), (2, 1), (1, 2)])
def test_images_past_4_mb_are_copied_per_band(st, dl):
    """A padded input past 4 MB is built a band of rows at a time per thread (AMX blocks and the VNNI / AVX2 /
    portable tiles alike): bands' edges, tiles ending inside a band, a float input quantized with a modulation."""
    g = torch.Generator().manual_seed(3)
    xq = torch.randint(0, 256, (1, 64, 262, 250), dtype=torch.uint8, generator=g)
    wq = torch.randint(-128, 128, (16, 64, 3, 3), dtype=torch.int8, generator=g)
    ws, b = torch.rand(16, generator=g) * 0.01 + 0.001, torch.randn(16, generator=g)
    y = qconv2d(xq, wq, ws, b, st, dl, dl, input_scale=0.03, input_zero_point=33, out_scale=0.05, out_zero_point=9,
                backend="cpu")
    e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, None, st, dl, dl, 1, None, 0.01, 0.05, 9)
    assert (y.int() - e.int()).abs().max() <= 1
    xf = xq.float() * 0.03 - 1.0
    sc, sh = torch.rand_like(xf) * 0.1, torch.rand_like(xf) * 0.1
    y = qconv2d(xf, wq, ws, b, st, dl, dl, input_scale=0.03, input_zero_point=33, modulation=(sc, sh), backend="cpu")
    e = ref.qconv2d(xf * (sc + 1) + sh, 0.03, 33, wq, ws, b, None, st, dl, dl)
    assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max()


FEW_CHANNEL_CASES = [  # (n, c, h, w, k, r, s, stride, padding, dilation)
    (1, 3, 37, 41, 64, 7, 7, 2, 3, 1),    # a ResNet-style 7×7 stem: seven 28-byte kernel rows in 32-byte chunks
    (2, 3, 30, 29, 64, 3, 3, 1, 1, 1),    # an RGB 3×3 (partial blocks: rows read into the copy's slack)
    (1, 8, 16, 128, 128, 4, 4, 4, 0, 1),  # SFTNet's k4s4 condition stem, whole blocks: read in place when uint8
    (1, 8, 12, 60, 96, 4, 4, 4, 0, 1),    # ... a partial last block: from the copy
    (1, 3, 6, 9, 24, 3, 3, 1, 1, 1),      # a narrow image (AMX: flat blocks)
    (1, 12, 9, 40, 33, 3, 3, 1, 1, 1),    # 36-byte kernel rows in 64-byte chunks
    (1, 3, 9, 40, 40, 1, 7, 1, (0, 3), 1),  # one kernel row
    (1, 5, 11, 12, 20, 3, 5, 1, 2, 1),    # non-square
    (1, 3, 11, 13, 16, 3, 3, 2, 2, 2),    # dilated: taps gathered
    (1, 1, 16, 16, 8, 3, 3, 1, 2, (2, 1)),  # dilated rows only: row taps, kernel rows 2 apart
]


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("case", FEW_CHANNEL_CASES, ids=str)
def test_few_channel_convs_match_the_integer_reference(case):
    """Convs of under 16 input channels (on AMX CPUs: taps as channels, each kernel row's taps one chunk read from
    the input, or gathered when dilated), uint8 input in both layouts and float input, float and requantized out."""
    n, c, h, w, k, r, s, st, pd, dl = case
    g = torch.Generator().manual_seed(5)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    wq = torch.randint(-128, 128, (k, c, r, s), dtype=torch.int8, generator=g)
    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)
    for x in (xq, xq.contiguous(memory_format=torch.channels_last), xq.float() * 0.03 - 1.0):
        y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.03, input_zero_point=33, backend="cpu")
        e = ref.qconv2d(x, 0.03, 33, wq, ws, b, None, st, pd, dl)
        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max()
        y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.03, input_zero_point=33, activation="relu",
                    out_scale=0.05, out_zero_point=100, backend="cpu")
        e = ref.qconv2d(x, 0.03, 33, wq, ws, b, None, st, pd, dl, 1, "relu", 0.01, 0.05, 100)
        assert (y.int() - e.int()).abs().max() <= 1


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_groups_of_few_channels_take_the_grouped_kernel_on_vnni():
    """On VNNI CPUs groups of 4-32 channels in and out run on the grouped kernel, not once per group; other shapes
    keep the per-group path (its correctness: the cases above)."""
    from sft_kernels.ops.qconv2d import cpu

    fits = torch.ops.sft_cpu.qconv2d_grouped_fits
    vnni = cpu.kernel() in ("vnni", "amx")
    for c, g in ((128, 32), (256, 32), (512, 32), (1024, 32), (12, 3)):
        assert fits(c, c, g) == vnni, (c, g)
    assert not fits(16, 32, 8) and not fits(64, 64, 32) and not fits(64, 64, 1)  # 2 in / 4 out, 2 per group, dense


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_forced_portable_isa_runs_the_portable_kernel():
    code = "from sft_kernels.ops.qconv2d import cpu; assert cpu.kernel() == 'generic', cpu.kernel()"
    proc = run_fresh(code, SFT_KERNELS_ISA="generic")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_fresh(code, SFT_KERNELS_INT8="tpu")
    assert "SFT_KERNELS_INT8 must be amx, vnni, avxvnni, avx2 or generic" in proc.stderr


def test_quantize_helpers_round_trip():
    x = torch.linspace(-1, 2, 301)
    q = ref.quantize(x, 0.02, 50)
    assert q.dtype == torch.uint8 and int(q.min()) == 0 and int(q.max()) == 150
    back = ref.dequantize(q, 0.02, 50)
    inside = (x >= -1.0) & (x <= 2.0)
    assert (back[inside] - x[inside]).abs().max() <= 0.01 + 1e-6


def test_bad_inputs():
    xq, wq, ws, b = _data(CASES[0], 0)
    with pytest.raises(TypeError, match="input must have dtype torch.uint8 or torch.float32"):
        qconv2d(xq.double(), wq, ws, input_scale=0.1, input_zero_point=0)
    with pytest.raises(TypeError, match="weight must have dtype torch.int8"):
        qconv2d(xq, wq.float(), ws, input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match="weight_scale must be positive and finite"):
        qconv2d(xq, wq, -ws, input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match="must hold 64 per-channel scales"):
        qconv2d(xq, wq, ws[:3], input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match="empty kernel"):
        qconv2d(xq, wq[:, :, :0], ws, input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match=r"residual must have the output's shape \(1, 16, 24, 20\)"):
        qconv2d(xq, wq, ws, None, 1, 1, input_scale=0.1, input_zero_point=0, pixel_shuffle=2,
                residual=torch.randn(1, 16, 24, 22))  # with the shuffle, the residual is shaped like its output
    with pytest.raises(ValueError, match="padding='same' is not supported here"):
        qconv2d(xq, wq, ws, None, 1, "same", input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match="input_zero_point must be an int in"):
        qconv2d(xq, wq, ws, input_scale=0.1, input_zero_point=300)
    with pytest.raises(ValueError, match="input_scale must be a positive"):
        qconv2d(xq, wq, ws, input_scale=0.0, input_zero_point=0)
    with pytest.raises(ValueError, match="does not fit input channels"):
        qconv2d(xq, wq[:, :5], ws, input_scale=0.1, input_zero_point=0)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        qconv2d(xq, wq, ws, padding=1, input_scale=0.1, input_zero_point=0, residual=torch.randn(1, 64, 3, 3))
    for bad in (0, 3, 2.0):  # 64 channels: 3² does not divide them
        with pytest.raises(ValueError, match="pixel_shuffle must be an int >= 1 whose square divides"):
            qconv2d(xq, wq, ws, padding=1, input_scale=0.1, input_zero_point=0, pixel_shuffle=bad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_sft_modulation_is_applied_as_the_input_is_quantized(backend, layout):
    # values on a 1/8 grid: x·(scale + 1) + shift is exact in float32, fused multiply-add or not
    gen = torch.Generator().manual_seed(5)
    grid = lambda *s: torch.randint(-16, 17, s, generator=gen).float() / 8  # noqa: E731
    x, ms, mt = grid(2, 40, 9, 13), grid(2, 40, 9, 13), grid(2, 40, 9, 13)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    wq = torch.randint(-127, 128, (24, 40, 3, 3), dtype=torch.int8, generator=gen)
    ws = torch.rand(24, generator=gen) * 0.01 + 0.001
    y = qconv2d(x, wq, ws, None, 1, 1, input_scale=0.125, input_zero_point=128, modulation=(ms, mt), backend=backend)
    expected = ref.qconv2d(x * (ms + 1) + mt, 0.125, 128, wq, ws, None, None, 1, 1)
    atol, rtol = tolerance(torch.float32, 1, expected.abs().max().item())
    torch.testing.assert_close(y.double(), expected, atol=atol, rtol=rtol)
    with pytest.raises(ValueError, match="modulation=.scale, shift. needs a float32 input"):
        qconv2d(x, wq, ws, None, 1, 1, input_scale=0.1, input_zero_point=0, modulation=(ms[:1], mt), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_depthwise_float_input_modulation_and_residual(backend, layout):
    """The depthwise path takes what the dense one takes: a float input quantized on the way (with an SFT
    modulation), a residual, both output types."""
    gen = torch.Generator().manual_seed(8)
    grid = lambda *s: torch.randint(-16, 17, s, generator=gen).float() / 8  # noqa: E731
    x, ms, mt = grid(2, 36, 11, 9), grid(2, 36, 11, 9), grid(2, 36, 11, 9)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    wq = torch.randint(-127, 128, (36, 1, 3, 3), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(36, generator=gen) * 0.01 + 0.001, torch.randn(36, generator=gen)
    res = torch.randn(2, 36, 11, 9, generator=gen)
    for o_scale in (0.0, 0.05):
        y = qconv2d(x, wq, ws, b, 1, 1, 1, 36, input_scale=0.125, input_zero_point=128, activation="relu",
                    residual=res, out_scale=o_scale, out_zero_point=7, modulation=(ms, mt), backend=backend)
        expected = ref.qconv2d(x * (ms + 1) + mt, 0.125, 128, wq, ws, b, res, 1, 1, 1, 36, "relu", 0.01, o_scale, 7)
        assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else
                               torch.contiguous_format)
        if o_scale:
            assert (y.int() - expected.int()).abs().max() <= 1
        else:
            atol, rtol = tolerance(torch.float32, 1, expected.abs().max().item())
            torch.testing.assert_close(y.double(), expected, atol=atol, rtol=rtol)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("threads", [1, 2])
def test_large_images_build_their_padded_input_per_band(threads):
    """Past a few MB of padded input the AMX driver copies bands of padded rows right before its tiles read them
    (any other kernel takes the shape as usual): bands at the image's top and bottom, a short last band, two images,
    channels padded (96 -> 128), a K tail, a float input quantized and modulated on the way."""
    gen = torch.Generator().manual_seed(11)
    xq = torch.randint(0, 256, (2, 96, 130, 160), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (33, 96, 3, 3), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(33, generator=gen) * 0.01 + 0.001, torch.randn(33, generator=gen)
    res = torch.randn(2, 33, 130, 160, generator=gen)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = qconv2d(xq.contiguous(memory_format=torch.channels_last), wq, ws, b, 1, 1, input_scale=0.02,
                    input_zero_point=77, activation="relu", residual=res, out_scale=0.05, out_zero_point=5,
                    backend="cpu")
        e = ref.qconv2d(xq, 0.02, 77, wq, ws, b, res, 1, 1, 1, 1, "relu", 0.01, 0.05, 5)
        assert (y.int() - e.int()).abs().max() <= 1
        xf, ms, mt = xq.float() * 0.01, torch.rand(xq.shape, generator=gen), torch.rand(xq.shape, generator=gen)
        y = qconv2d(xf, wq, ws, None, 1, 1, input_scale=0.02, input_zero_point=77, modulation=(ms, mt),
                    backend="cpu")
        e = ref.qconv2d(xf * (ms + 1) + mt, 0.02, 77, wq, ws, None, None, 1, 1)
        atol, rtol = tolerance(torch.float32, 1, e.abs().max().item())
        torch.testing.assert_close(y.double(), e, atol=atol, rtol=rtol)
    finally:
        torch.set_num_threads(prev)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 64, 60, 200, 80, 2), (1, 64, 40, 20, 48, 1)], ids=["rows", "flat"])
def test_amx_runs_of_blocks(threads, shape):
    """The AMX driver runs up to 4 blocks of 32 pixels panel by panel: rows of 100 pixels (4 blocks, the last
    partial) at stride 2, and the flat mode's blocks over the padded-width grid (runs of 3 or 4 with a short last
    run); 80 and 48 output channels (a partial panel); float output with a residual, and uint8."""
    n, c, h, w, k, st = shape
    gen = torch.Generator().manual_seed(5)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c, 3, 3), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(k, generator=gen) * 0.01 + 0.001, torch.randn(k, generator=gen)
    p, q = (h - 1) // st + 1, (w - 1) // st + 1
    res = torch.randn(n, k, p, q, generator=gen)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        xcl = xq.contiguous(memory_format=torch.channels_last)
        y = qconv2d(xcl, wq, ws, b, st, 1, input_scale=0.02, input_zero_point=9, activation="leaky_relu",
                    negative_slope=0.1, residual=res, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, res, st, 1, 1, 1, "leaky_relu", 0.1)
        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max()
        y = qconv2d(xcl, wq, ws, b, st, 1, input_scale=0.02, input_zero_point=9, out_scale=0.05, out_zero_point=7,
                    backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, None, st, 1, 1, 1, None, 0.01, 0.05, 7)
        assert (y.int() - e.int()).abs().max() <= 1
    finally:
        torch.set_num_threads(prev)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("shape", [(2, 32, 6, 64, 48), (1, 64, 8, 12, 32), (1, 32, 7, 20, 40), (3, 24, 4, 32, 33)],
                         ids=["rows", "flat", "copied", "24ch"])
def test_1x1_reads_uint8_channels_last_input_in_place(shape):
    """A 1×1 conv of a uint8 channels_last input whose channels need no padding (32 or 64 on AMX) reads its tiles
    from the input: rows of 64 pixels, a flat grid of 96 pixels; 7×20 (the last tiles would run past the input) and
    24 channels (padded to 32) take the copy. Each against the integer reference, with a channel slice too."""
    n, c, h, w, k = shape
    gen = torch.Generator().manual_seed(3)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (k, c, 1, 1), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(k, generator=gen) * 0.01 + 0.001, torch.randn(k, generator=gen)
    wide = torch.randint(0, 256, (n, c + 8, h, w), dtype=torch.uint8, generator=gen)
    wide[:, 4:4 + c] = xq
    for x in (xq.contiguous(memory_format=torch.channels_last),
              wide.contiguous(memory_format=torch.channels_last)[:, 4:4 + c]):
        y = qconv2d(x, wq, ws, b, 1, 0, input_scale=0.02, input_zero_point=40, activation="relu", out_scale=0.05,
                    out_zero_point=3, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 40, wq, ws, b, None, 1, 0, 1, 1, "relu", 0.01, 0.05, 3)
        assert (y.int() - e.int()).abs().max() <= 1


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("case", [(8, (4, 4), 4, 0), (12, (3, 3), 1, 0), (8, (3, 3), 1, 1), (3, (3, 3), 1, 0),
                                  (3, (7, 7), 2, 3), (3, (1, 7), 1, (0, 3)), (3, (3, 1), 2, (1, 0)), (2, (2, 2), 1, 0)],
                         ids=["8ch-k4s4", "12ch-k3", "8ch-k3-padded", "3ch-k3", "3ch-k7s2", "3ch-1x7", "3ch-3x1s2",
                              "2ch-k2"])
def test_few_channel_convs_read_taps_as_channels(case):
    """Few-channel convs run with their taps as channels (AMX), each kernel row's taps one 32- or 64-byte chunk
    read straight from the uint8 input when it needs no padding and its blocks are whole, else from the padded copy
    (padding, 3 channels, partial blocks). Against the integer reference, uint8 output, 1 and 2 threads."""
    c, (kh, kw), st, pd = case
    gen = torch.Generator().manual_seed(8)
    xq = torch.randint(0, 256, (2, c, 21, 26), dtype=torch.uint8, generator=gen)
    wq = torch.randint(-127, 128, (40, c, kh, kw), dtype=torch.int8, generator=gen)
    ws, b = torch.rand(40, generator=gen) * 0.01 + 0.001, torch.randn(40, generator=gen)
    e = ref.qconv2d(xq, 0.02, 17, wq, ws, b, None, st, pd, 1, 1, "relu", 0.01, 0.05, 6)
    prev = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y = qconv2d(xq.contiguous(memory_format=torch.channels_last), wq, ws, b, st, pd, input_scale=0.02,
                        input_zero_point=17, activation="relu", out_scale=0.05, out_zero_point=6, backend="cpu")
            assert (y.int() - e.int()).abs().max() <= 1, threads
    finally:
        torch.set_num_threads(prev)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("kernel", [k for k in int8_kernels() if k in ("amx", "vnni")] or
                         [pytest.param("vnni", marks=pytest.mark.skip(reason="no AVX-512 VNNI here"))])
def test_few_output_channel_convs_put_pixels_in_the_lanes(kernel):
    """Convs of 1-8 output channels run with output pixels in the vector lanes on VNNI (an RGB output conv; on AMX
    those of up to 4 outputs from 16 to 64 input channels, the rest keep AMX blocks, checked on the same shapes): 1..8
    channels, blocks of 16·NV pixels and row tails of 1..16, row stride 2 and dilation, a 1×1 and a 5×5, batches,
    uint8 and float (NCHW) input, 48 channels (64 on AMX's padding), 128 → 2, every activation, residual, uint8 and
    float output; 9 channels take the 32-wide tiles."""
    code = ("import torch\n"
            "from sft_kernels.ops import qconv2d\n"
            "from sft_kernels.ops.qconv2d import cpu, reference as ref\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "g = torch.Generator().manual_seed(5)\n"
            "for n, c, h, w, k, r, st, pd, dl in ((1, 64, 6, 130, 3, 3, 1, 1, 1), (2, 5, 7, 37, 1, 3, 1, 1, 1),\n"
            "        (1, 16, 9, 20, 8, 3, (2, 1), 1, 1), (1, 32, 8, 17, 5, 3, 1, 2, 2),\n"
            "        (2, 12, 5, 99, 2, 1, 1, 0, 1),\n"
            "        (1, 7, 8, 23, 4, 5, 1, 2, 1), (1, 64, 5, 33, 9, 3, 1, 1, 1), (1, 48, 6, 23, 3, 3, 1, 1, 1),\n"
            "        (1, 128, 5, 20, 2, 3, 1, 1, 1)):\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wq = torch.randint(-128, 128, (k, c, r, r), dtype=torch.int8, generator=g)\n"
            "    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)\n"
            "    e = ref.qconv2d(xq, 0.03, 33, wq, ws, None, None, st, pd, dl)\n"
            "    res = torch.randn(e.shape, generator=g)\n"
            "    for x in (xq.contiguous(memory_format=torch.channels_last), xq.float() * 0.03 - 1.0):\n"
            "        for act in (None, 'relu', 'leaky_relu', 'relu6', 'silu', 'hardswish', 'gelu'):\n"
            "            y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.03, input_zero_point=33, activation=act,\n"
            "                        negative_slope=0.1, residual=res, backend='cpu')\n"
            "            e = ref.qconv2d(x, 0.03, 33, wq, ws, b, res, st, pd, dl, 1, act, 0.1)\n"
            "            assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), (c, k, act)\n"
            "            y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.03, input_zero_point=33, activation=act,\n"
            "                        negative_slope=0.1, out_scale=0.05, out_zero_point=100, backend='cpu')\n"
            "            e = ref.qconv2d(x, 0.03, 33, wq, ws, b, None, st, pd, dl, 1, act, 0.1, 0.05, 100)\n"
            "            assert (y.int() - e.int()).abs().max() <= 1, (c, k, act)\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("kernel", int8_kernels())
def test_unpadded_uint8_input_is_read_in_place_by_every_kernel(kernel):
    """A conv needing no padding of a uint8 channels_last input (1×1 and a valid 3×3, a channel slice of a wider
    tensor too) reads its taps from the input itself on the VNNI / AVX2 / portable tiles: against the reference."""
    code = ("import torch\n"
            "from sft_kernels.ops import qconv2d\n"
            "from sft_kernels.ops.qconv2d import cpu, reference as ref\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "g = torch.Generator().manual_seed(6)\n"
            "for n, c, h, w, k, r in ((2, 32, 6, 19, 40, 1), (1, 64, 7, 9, 33, 3), (1, 12, 5, 30, 64, 1)):\n"
            "    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)\n"
            "    wide = torch.randint(0, 256, (n, c + 8, h, w), dtype=torch.uint8, generator=g)\n"
            "    wide[:, 4:4 + c] = xq\n"
            "    wq = torch.randint(-128, 128, (k, c, r, r), dtype=torch.int8, generator=g)\n"
            "    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)\n"
            "    e = ref.qconv2d(xq, 0.03, 33, wq, ws, b, None, 1, 0, 1, 1, 'relu', 0.01, 0.05, 7)\n"
            "    for x in (xq.contiguous(memory_format=torch.channels_last),\n"
            "              wide.contiguous(memory_format=torch.channels_last)[:, 4:4 + c]):\n"
            "        y = qconv2d(x, wq, ws, b, 1, 0, input_scale=0.03, input_zero_point=33, activation='relu',\n"
            "                    out_scale=0.05, out_zero_point=7, backend='cpu')\n"
            "        assert (y.int() - e.int()).abs().max() <= 1, (c, k, r)\n")
    run_with_int8_kernel(kernel, code)
