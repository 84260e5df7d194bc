"""sft.qconv2d's cpu input paths against the integer reference: strided convs over the padded copy's phase planes
(AMX: flat blocks over each plane; other kernels take them as any strided conv), the flat mode's store of
scattered rows with residuals, and the input copies of few-channel images (uint8 and float32, channels_last and
NCHW, with an SFT modulation)."""
import pytest
import torch

from sft_kernels.ops import qconv2d
from sft_kernels.ops.qconv2d import reference as ref
from tests.conftest import op_backends

pytestmark = pytest.mark.skipif("cpu" not in op_backends("qconv2d", torch.uint8), reason="cpu backend not built")

STRIDED = [  # n, c, h, w, k, r, stride, padding, dilation
    (1, 64, 14, 14, 64, 3, 2, 1, 1),  # ResNet's last downsampling 3×3, scaled down: 7 of 32 pixels a row
    (2, 80, 13, 11, 48, 3, 2, 1, 1),  # odd sizes, a batch, a partial panel
    (1, 32, 16, 15, 40, 5, 2, 2, 1),  # 5×5: three tap rows per plane row
    (1, 64, 17, 19, 32, 3, 3, 1, 1),  # stride 3: nine planes
    (1, 64, 12, 9, 64, 3, (2, 1), 1, 1),  # stride 2 down, 1 across: two planes
    (1, 64, 15, 15, 33, 3, 2, 2, 2),  # dilation 2 at stride 2: every tap in one plane
    (2, 128, 14, 14, 64, 1, 2, 0, 1),  # strided 1×1: one plane
    (1, 64, 9, 13, 64, 1, 2, 1, 1),  # strided 1×1 with padding
    (1, 64, 6, 64, 48, 1, 2, 0, 1),  # strided 1×1, 32-pixel rows: AMX blocks read a uint8 input in place
    (1, 48, 9, 9, 32, 7, 2, 3, 1),  # 7×7 stride 2
]


def _data(n, c, h, w, k, r, seed):
    g = torch.Generator().manual_seed(seed)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    wq = torch.randint(-127, 128, (k, c, r, r), dtype=torch.int8, generator=g)
    ws = torch.rand(k, generator=g) * 0.01 + 0.001
    return g, xq, wq, ws, torch.randn(k, generator=g)


@pytest.mark.parametrize("case", STRIDED, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_strided_convs_over_phase_planes(case, threads):
    n, c, h, w, k, r, st, pd, dl = case
    g, xq, wq, ws, b = _data(n, c, h, w, k, r, 3)
    xcl = xq.contiguous(memory_format=torch.channels_last)
    e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, None, st, pd, dl, 1, "leaky_relu", 0.1)
    res = torch.randn(e.shape, generator=g)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for x in (xcl, xq, xq.float() * 0.02 - 0.18):  # uint8 in place or not, a float input quantized on the way
            y = qconv2d(x, wq, ws, b, st, pd, dl, input_scale=0.02, input_zero_point=9, activation="leaky_relu",
                        negative_slope=0.1, backend="cpu")
            assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), x.dtype
        y = qconv2d(xcl, wq, ws, b, st, pd, dl, input_scale=0.02, input_zero_point=9, residual=res, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, res, st, pd, dl)
        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max()
        y = qconv2d(xcl, wq, ws, b, st, pd, dl, input_scale=0.02, input_zero_point=9, out_scale=0.05,
                    out_zero_point=7, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, None, st, pd, dl, 1, None, 0.01, 0.05, 7)
        assert (y.int() - e.int()).abs().max() <= 1
    finally:
        torch.set_num_threads(prev)


@pytest.mark.parametrize("shape", [(1, 64, 7, 7, 64), (2, 96, 5, 9, 32), (1, 64, 14, 14, 80)], ids=str)
def test_flat_blocks_store_requantized_outputs_with_residuals(shape):
    """Small images take flat blocks over the padded-width grid: their valid rows are stored two pixels at a time
    (uint8, whole panels) with the residual read at the same scattered rows; a float32 and a uint8 residual, and
    a partial panel (80) on the one-pixel path."""
    n, c, h, w, k = shape
    g, xq, wq, ws, b = _data(n, c, h, w, k, 3, 4)
    xcl = xq.contiguous(memory_format=torch.channels_last)
    res_f = torch.randn(n, k, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    res_q = torch.randint(0, 256, (n, k, h, w), dtype=torch.uint8, generator=g)
    for act in (None, "relu"):
        y = qconv2d(xcl, wq, ws, b, 1, 1, input_scale=0.02, input_zero_point=9, activation=act, residual=res_f,
                    out_scale=0.05, out_zero_point=60, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, res_f, 1, 1, 1, 1, act, 0.01, 0.05, 60)
        assert (y.int() - e.int()).abs().max() <= 1, act
        y = qconv2d(xcl, wq, ws, b, 1, 1, input_scale=0.02, input_zero_point=9, activation=act, residual=res_q,
                    residual_quant=(0.03, 100), out_scale=0.05, out_zero_point=60, backend="cpu")
        e = ref.qconv2d(xq, 0.02, 9, wq, ws, b, (res_q.double() - 100) * 0.03, 1, 1, 1, 1, act, 0.01, 0.05, 60)
        assert (y.int() - e.int()).abs().max() <= 1, act


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 11, 13])
def test_few_channel_inputs_in_every_layout(c):
    """Few-channel images (an RGB first conv) copied into the padded input: uint8 and float32, channels_last,
    NCHW and a strided view, 3×3 and the 7×7 stride-2 stem, with row lengths that end mid-vector."""
    for h, w, k, r, st in ((9, 37, 16, 3, 1), (20, 23, 40, 7, 2)):
        g, xq, wq, ws, b = _data(2, c, h, w, k, r, c)
        x = torch.rand(2, c, h, w, generator=g) * 2 - 0.5
        for inp in (xq, xq.contiguous(memory_format=torch.channels_last), x,
                    x.contiguous(memory_format=torch.channels_last), x[:, :, :, 1:],
                    x.contiguous(memory_format=torch.channels_last)[:, :, 1:]):
            y = qconv2d(inp, wq, ws, b, st, r // 2, input_scale=0.01, input_zero_point=50, backend="cpu")
            e = ref.qconv2d(inp, 0.01, 50, wq, ws, b, None, st, r // 2)
            assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), (inp.dtype, inp.stride())


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_few_channel_float_input_with_modulation(layout):
    # values on a 1/8 grid: x·(scale + 1) + shift is exact in float32, fused multiply-add or not
    g = torch.Generator().manual_seed(6)
    grid = lambda *s: torch.randint(-16, 17, s, generator=g).float() / 8  # noqa: E731
    for c in (3, 4, 6):
        x, ms, mt = grid(1, c, 11, 21), grid(1, c, 11, 21), grid(1, c, 11, 21)
        if layout == "channels_last":
            x, ms, mt = (t.contiguous(memory_format=torch.channels_last) for t in (x, ms, mt))
        wq = torch.randint(-127, 128, (24, c, 3, 3), dtype=torch.int8, generator=g)
        ws = torch.rand(24, generator=g) * 0.01 + 0.001
        y = qconv2d(x, wq, ws, None, 1, 1, input_scale=0.125, input_zero_point=128, modulation=(ms, mt),
                    backend="cpu")
        e = ref.qconv2d(x * (ms + 1) + mt, 0.125, 128, wq, ws, None, None, 1, 1)
        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max(), c
