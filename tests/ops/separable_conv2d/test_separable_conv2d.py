"""sft.separable_conv2d on every backend against the two-conv float64 reference: odd sizes, strides, dilation,
channel multipliers, every activation, residuals, NCHW / channels_last / sliced inputs; and the cpu kernel's
portable path (forced ISA) and bad inputs."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sft_kernels.ops import separable_conv2d
from sft_kernels.testing import assert_close
from tests.conftest import op_backends

CASES = [  # n, c, h, w, mult, k, r, s, stride, padding, dilation
    (2, 5, 13, 11, 1, 7, 3, 3, 1, 1, 1),
    (1, 8, 9, 9, 1, 16, 3, 3, 2, 2, 2),
    (1, 3, 7, 7, 1, 4, 3, 3, 1, 0, 1),
    (1, 64, 12, 10, 1, 40, 3, 3, 1, 1, 1),  # 64 channels: whole vectors; K not a multiple of the panel width
    (2, 17, 8, 15, 1, 33, 5, 5, 1, 2, 1),  # 17 channels: a masked vector tail; 5x5
    (1, 6, 11, 9, 2, 10, 3, 3, 2, 1, 1),  # channel multiplier 2
    (3, 24, 6, 6, 1, 24, 1, 3, 1, (0, 1), 1),  # 1x3 kernel, asymmetric padding
]


def _reference(x, dw, pw, dwb, pwb, st, pd, dl, mid, act, slope, res):
    y = F.conv2d(x.double(), dw.double(), None if dwb is None else dwb.double(), st, pd, dl, groups=x.shape[1])
    y = {None: y, "relu": F.relu(y), "leaky_relu": F.leaky_relu(y, slope)}[mid]
    y = F.conv2d(y, pw.double(), None if pwb is None else pwb.double())
    y = {None: y, "relu": F.relu(y), "leaky_relu": F.leaky_relu(y, slope)}[act]
    return y if res is None else y + res.double()


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "slice":  # a channel slice of a channels_last tensor: unit channel stride, not contiguous
        wide = torch.randn(x.shape[0], x.shape[1] + 3, *x.shape[2:]).contiguous(memory_format=torch.channels_last)
        wide[:, 1:1 + x.shape[1]] = x
        return wide[:, 1:1 + x.shape[1]]
    return x


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "slice"])
def test_separable_matches_two_convs(backend, case, layout):
    n, c, h, w, m, k, r, s, st, pd, dl = case
    x = torch.randn(n, c, h, w)
    dw, pw = torch.randn(c * m, 1, r, s), torch.randn(k, c * m, 1, 1)
    dwb, pwb = torch.randn(c * m), torch.randn(k)
    y = separable_conv2d(_layout(x, layout), dw, pw, dwb, pwb, st, pd, dl, mid_activation="relu",
                         activation="leaky_relu", negative_slope=0.2, backend=backend)
    ref = _reference(x, dw, pw, dwb, pwb, st, pd, dl, "relu", "leaky_relu", 0.2, None)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout != "nchw" else torch.contiguous_format)
    assert_close(y, ref, k=r * s + c * m)


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
@pytest.mark.parametrize("mid,act", [(None, None), ("leaky_relu", "relu"), ("relu", None)])
def test_separable_epilogues_and_residual(backend, mid, act):
    x = torch.randn(2, 16, 9, 8).contiguous(memory_format=torch.channels_last)
    dw, pw, pwb = torch.randn(16, 1, 3, 3), torch.randn(24, 16, 1, 1), torch.randn(24)
    res = torch.randn(2, 24, 9, 8)
    y = separable_conv2d(x, dw, pw, None, pwb, 1, 1, mid_activation=mid, activation=act, negative_slope=0.3,
                         residual=res, backend=backend)
    assert_close(y, _reference(x, dw, pw, None, pwb, 1, 1, 1, mid, act, 0.3, res), k=9 + 16)


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("r", [2, 3])
@pytest.mark.parametrize("h", [7, 1])  # one row: shuffle_sub_pixels had come back with strided rows
def test_separable_pixel_shuffle_then_residual(backend, layout, r, h):
    """pixel_shuffle=r: PixelShuffle of the activated conv, then the residual (shaped like the shuffled output)."""
    x = _layout(torch.randn(2, 8, h, 5), layout)
    dw, pw, pwb = torch.randn(8, 1, 3, 3), torch.randn(4 * r * r, 8, 1, 1), torch.randn(4 * r * r)
    res = torch.randn(2, 4, h * r, 5 * r)
    y = separable_conv2d(x, dw, pw, None, pwb, 1, 1, mid_activation="relu", activation="relu", residual=res,
                         pixel_shuffle=r, backend=backend)
    ref = F.pixel_shuffle(_reference(x, dw, pw, None, pwb, 1, 1, 1, "relu", "relu", 0.01, None), r) + res.double()
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout != "nchw" else torch.contiguous_format)
    assert_close(y, ref, k=9 + 8)
    with pytest.raises(ValueError, match="pixel_shuffle must be an int >= 1 whose square divides"):
        separable_conv2d(x, dw, pw, None, None, 1, 1, pixel_shuffle=5, backend=backend)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        separable_conv2d(x, dw, pw, None, None, 1, 1, residual=torch.randn(2, 4 * r * r, h, 5), pixel_shuffle=r,
                         backend=backend)


SHUFFLE_CASES = [  # n, c, h, w, k, r, stride, threads: sub-pixel runs of whole micro-kernel panels (the shuffled store)
    (2, 16, 7, 5, 256, 2, 1, 2),  # SFTNet's upsampling shape (64 channels a sub-pixel), rows shorter than a tile
    (1, 8, 6, 19, 288, 3, 1, 1),  # r = 3, 32 channels a sub-pixel, a row of 19 pixels (a partial tile)
    (1, 300, 9, 7, 128, 2, 2, 2),  # 300 mid channels: two K slices accumulated in the shuffled output; stride 2
    (1, 24, 9, 1, 128, 2, 1, 2),  # one-pixel rows
]


@pytest.mark.skipif("cpu" not in op_backends("separable_conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("case", SHUFFLE_CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cpu_pixel_shuffle_in_the_store(case, layout):
    """Channels per sub-pixel a multiple of the panel width: the store writes the shuffled output (and adds the
    residual there, an NCHW one too); against PixelShuffle of the reference."""
    n, c, h, w, k, r, st, threads = case
    x = _layout(torch.randn(n, c, h, w), layout)
    dw, pw, dwb, pwb = torch.randn(c, 1, 3, 3), torch.randn(k, c, 1, 1) / c ** 0.5, torch.randn(c), torch.randn(k)
    p, q = (h - 1) // st + 1, (w - 1) // st + 1
    res = torch.randn(n, k // (r * r), p * r, q * r)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = separable_conv2d(x, dw, pw, dwb, pwb, st, 1, mid_activation="relu", activation="leaky_relu",
                             negative_slope=0.1, residual=res, pixel_shuffle=r, backend="cpu")
        y0 = separable_conv2d(x, dw, pw, dwb, pwb, st, 1, mid_activation="relu", activation="leaky_relu",
                              negative_slope=0.1, pixel_shuffle=r, backend="cpu")
    finally:
        torch.set_num_threads(old)
    ref = F.pixel_shuffle(_reference(x, dw, pw, dwb, pwb, st, 1, 1, "relu", "leaky_relu", 0.1, None), r)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout != "nchw" else torch.contiguous_format)
    assert_close(y, ref + res.double(), k=9 + c)
    assert_close(y0, ref, k=9 + c)


@pytest.mark.skipif("triton" not in op_backends("separable_conv2d", torch.float16), reason="Triton not available")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_triton_half(dtype):
    """fp16 / bf16 operands, fp32 accumulation of both the depthwise taps and the pointwise dot; 40 mid channels
    (a masked last channel block), a multiplier and stride 2."""
    x = torch.randn(2, 20, 9, 10)
    dw, pw, dwb, pwb = torch.randn(40, 1, 3, 3), torch.randn(24, 40, 1, 1), torch.randn(40), torch.randn(24)
    res = torch.randn(2, 24, 5, 5)
    h = [t.to(dtype) for t in (x, dw, pw, dwb, pwb, res)]
    y = separable_conv2d(h[0].contiguous(memory_format=torch.channels_last), *h[1:5], 2, 1,
                         mid_activation="leaky_relu", activation="relu", residual=h[5], backend="triton")
    assert y.dtype == dtype
    ref = _reference(*[t.double() for t in h[:5]], 2, 1, 1, "leaky_relu", "relu", 0.01, h[5].double())
    # the depthwise map is rounded to the operand dtype before the dot: tolerance of a 9 + 40 term sum
    assert_close(y, ref, k=9 + 40)


@pytest.mark.skipif("cpu" not in op_backends("separable_conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_cpu_portable_paths(isa):
    """The fused kernel without AVX-512: scalar depthwise, packed-A micro-kernels (a fresh process per ISA)."""
    code = ("import torch, torch.nn.functional as F\n"
            "from sft_kernels.ops import separable_conv2d\n"
            "torch.manual_seed(0)\n"
            "for c, m, st, k, r in ((13, 1, 1, 21, 1), (8, 2, 2, 21, 1), (520, 1, 1, 21, 1), (16, 1, 1, 256, 2)):\n"
            "    x = torch.randn(2, c, 11, 9); dw = torch.randn(c * m, 1, 3, 3); pw = torch.randn(k, c * m, 1, 1)\n"
            "    y = separable_conv2d(x, dw, pw, None, None, st, 1, mid_activation='relu', pixel_shuffle=r,\n"
            "                         backend='cpu')\n"
            "    ref = F.conv2d(F.relu(F.conv2d(x.double(), dw.double(), None, st, 1, 1, c)), pw.double())\n"
            "    ref = F.pixel_shuffle(ref, r)\n"
            "    assert (y.double() - ref).abs().max() < 1e-4 * ref.abs().max(), (y.double() - ref).abs().max()\n")
    env = dict(os.environ, SFT_KERNELS_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if "cannot run" in proc.stderr:
        pytest.skip(f"this CPU cannot run {isa}")
    assert proc.returncode == 0, proc.stderr[-2000:]


CHUNK_CASES = [  # n, c, h, w, k, stride, threads: how the cpu kernel splits work (rows per chunk, K slices)
    (1, 300, 7, 7, 40, 1, 1),  # one chunk of 7 narrow rows (49 pixels cross rows inside a tile); 2 K slices
    (1, 300, 7, 7, 40, 1, 2),  # the 7 rows split 3 / 4 between two threads
    (2, 520, 13, 14, 33, 2, 2),  # stride 2, 3 K slices, two images
    (1, 24, 9, 1, 16, 1, 2),  # one-pixel rows
    (1, 16, 128, 128, 64, 1, 2),  # an output of 1 M floats from a shallow K: non-temporal stores
]


@pytest.mark.skipif("cpu" not in op_backends("separable_conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("case", CHUNK_CASES, ids=str)
def test_cpu_chunks_and_k_slices(case):
    n, c, h, w, k, st, threads = case
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    dw, pw, dwb, pwb = torch.randn(c, 1, 3, 3), torch.randn(k, c, 1, 1) / c ** 0.5, torch.randn(c), torch.randn(k)
    p, q = (h - 1) // st + 1, (w - 1) // st + 1
    res = torch.randn(n, k, p, q)
    if p == 1 or q == 1:  # size-1 dims may carry any stride: the kernel must not step rows with it
        res = torch.empty_strided((n, k, p, q), (k * p * q, 1, 7 * k * q if q == 1 else 12345, k)).copy_(res)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = separable_conv2d(x, dw, pw, dwb, pwb, st, 1, mid_activation="relu", activation="leaky_relu",
                             negative_slope=0.1, residual=res, backend="cpu")
    finally:
        torch.set_num_threads(old)
    assert_close(y, _reference(x, dw, pw, dwb, pwb, st, 1, 1, "relu", "leaky_relu", 0.1, res), k=9 + c)


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
def test_separable_empty_batch(backend):
    y = separable_conv2d(torch.randn(0, 4, 6, 6), torch.randn(4, 1, 3, 3), torch.randn(5, 4, 1, 1), padding=1,
                         backend=backend)
    assert y.shape == (0, 5, 6, 6)


def test_separable_bad_input():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="pw_weight must have shape"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 5, 1, 1))
    with pytest.raises(ValueError, match="channel mismatch"):
        separable_conv2d(x, torch.randn(4, 2, 3, 3), torch.randn(6, 4, 1, 1))
    with pytest.raises(ValueError, match="pw_bias must have 6"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 4, 1, 1), pw_bias=torch.randn(5))
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 4, 1, 1), residual=torch.randn(1, 6, 8, 8))
    with pytest.raises(ValueError, match="activation must be one of"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 4, 1, 1), mid_activation="mish")
    with pytest.raises(TypeError, match="dtype"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3).double(), torch.randn(6, 4, 1, 1))


def test_cuda_launcher_layouts_with_an_emulated_kernel():
    """The cuda backend's launcher (ops/separable_conv2d/cuda.py) on the CPU, with the extension replaced by an
    emulation of its contract (NHWC x, CM×R×S dw, K×CM pw, NHWC residual and output): the layouts it hands over and
    takes back, NCHW and channels_last, multiplier and stride."""
    from sft_kernels.ops.separable_conv2d import cuda as sep_cuda

    def kernel(xh, dw, dwb, pw, pwb, stride, padding, dilation, mid, act, slope, resh, shuffle):
        assert xh.is_contiguous() and dw.dim() == 3 and pw.dim() == 2 and (resh is None or resh.is_contiguous())
        acts = (None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh")
        x = xh.permute(0, 3, 1, 2)
        res = None if resh is None else resh.permute(0, 3, 1, 2)
        y = _reference(x, dw.unsqueeze(1), pw[:, :, None, None], dwb, pwb, stride, padding, dilation, acts[mid],
                       acts[act], slope, None)
        y = F.pixel_shuffle(y, shuffle) + (0 if res is None else res.double())
        return y.to(xh.dtype).permute(0, 2, 3, 1).contiguous()

    x = torch.randn(2, 6, 11, 9)
    dw, pw, dwb, pwb = torch.randn(12, 1, 3, 3), torch.randn(10, 12, 1, 1), torch.randn(12), torch.randn(10)
    res = torch.randn(2, 10, 6, 5)
    ref = _reference(x, dw, pw, dwb, pwb, 2, 1, 1, "relu", "leaky_relu", 0.2, res)
    for layout in ("nchw", "channels_last"):
        y = sep_cuda.separable_conv2d(_layout(x, layout), dw, pw, dwb, pwb, res, (2, 2), (1, 1), (1, 1), "relu",
                                      "leaky_relu", 0.2, kernel=kernel)
        assert y.is_contiguous(memory_format=torch.channels_last if layout != "nchw" else torch.contiguous_format)
        assert_close(y, ref, k=9 + 12)
    pw4, pwb4, res4 = torch.randn(40, 12, 1, 1), torch.randn(40), torch.randn(2, 10, 12, 10)  # PixelShuffle(2)
    ref = F.pixel_shuffle(_reference(x, dw, pw4, dwb, pwb4, 2, 1, 1, "relu", None, 0.2, None), 2) + res4.double()
    y = sep_cuda.separable_conv2d(x, dw, pw4, dwb, pwb4, res4, (2, 2), (1, 1), (1, 1), "relu", None, 0.2, 2,
                                  kernel=kernel)
    assert y.shape == ref.shape
    assert_close(y, ref, k=9 + 12)
