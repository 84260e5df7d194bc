"""sft.conv2d(algorithm="bf16_winograd"): Winograd F(4×4,3×3) with the transformed tiles and filters rounded to
bfloat16 and float32 sums (the cpu backend's bf16 blocks: AMX tiles or AVX512-BF16 vectors), against its definition
on the reference backend; the epilogue, PixelShuffle and modulation; clear errors for convs it does not run."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sft_kernels.backends import BackendUnavailableError, bf16_available
from sft_kernels.ops import conv2d
from sft_kernels.ops.conv2d import _conv2d_op
from sft_kernels.testing import BF16_WINOGRAD_OF_MAX, BF16_WINOGRAD_OF_RMS, tol

bf16_here = pytest.mark.skipif(not bf16_available(),
                               reason="neither AMX-BF16 nor AVX512-BF16 here (or the cpu extension is missing)")

# (N, C, H, W, K, padding): channel tails (C, K not multiples of 32), a half panel (K ≤ 16), K past two panels,
# a 1×1 image, odd sizes, more tiles than one block of 32 (several blocks, a short last one), padding 0 and 2
SHAPES = [
    (2, 20, 13, 11, 40, 1),
    (1, 64, 12, 12, 64, 1),
    (1, 33, 7, 30, 64, 0),
    (1, 64, 20, 21, 3, 2),
    (1, 16, 1, 1, 16, 1),
    (3, 40, 17, 5, 70, 1),
    (1, 96, 9, 9, 96, 1),
    (1, 64, 40, 46, 64, 1),
]


def _same(y, want, msg=""):
    """Within one bf16 step of the transformed values where they lie next to a rounding boundary, and rarely."""
    torch.testing.assert_close(y, want, rtol=0, atol=BF16_WINOGRAD_OF_MAX * want.abs().max().item(), msg=msg or None)
    rms = (y - want).pow(2).mean().sqrt().item()
    assert rms <= BF16_WINOGRAD_OF_RMS * want.pow(2).mean().sqrt().item() + 1e-7, (msg, rms)


def _run(x, w, b, padding, backend, **kw):
    return conv2d(x, w, b, 1, padding, backend=backend, algorithm="bf16_winograd", **kw)


@bf16_here
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_winograd_matches_definition(shape, layout, threads):
    n, c, h, w, k, pd = shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    wt, b = torch.randn(k, c, 3, 3) / (9 * c) ** 0.5, torch.randn(k)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = _run(x, wt, b, pd, "cpu")
    finally:
        torch.set_num_threads(old)
    want = _run(x, wt, b, pd, "reference")
    plain = F.conv2d(x, wt, b, 1, pd)
    assert y.shape == want.shape == plain.shape and y.stride() == plain.stride()  # F.conv2d's memory format
    _same(y, want, str(shape))


@bf16_here
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "silu", "gelu"])
@pytest.mark.parametrize("res_layout", ["none", "channels_last", "nchw"])
def test_bf16_winograd_epilogue(act, res_layout):
    torch.manual_seed(1)
    x = torch.randn(2, 48, 15, 18).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(40, 48, 3, 3) / 20
    res = None if res_layout == "none" else torch.randn(2, 40, 15, 18)
    if res_layout == "channels_last":
        res = res.contiguous(memory_format=torch.channels_last)
    kw = dict(activation=act, residual=res, negative_slope=0.2)
    _same(_run(x, wt, None, 1, "cpu", **kw), _run(x, wt, None, 1, "reference", **kw), f"{act} {res_layout}")


@bf16_here
@pytest.mark.parametrize("c,k,r", [(64, 256, 2), (40, 128, 2), (16, 144, 3)])
def test_bf16_winograd_pixel_shuffle_and_modulation(c, k, r):
    """PixelShuffle written by the output transform (residual after it), and an SFT modulation of the input applied
    as tiles are gathered."""
    torch.manual_seed(2)
    x = torch.randn(1, c, 11, 14).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c, 3, 3) / (3 * c), torch.randn(k)
    res = torch.randn(1, k // (r * r), 11 * r, 14 * r).contiguous(memory_format=torch.channels_last)
    kw = dict(activation="relu", residual=res, pixel_shuffle=r)
    _same(_run(x, wt, b, 1, "cpu", **kw), _run(x, wt, b, 1, "reference", **kw), "shuffle")
    scale, shift = (torch.randn_like(x) * 0.1 for _ in range(2))
    kw = dict(modulation=(scale, shift))
    _same(_run(x, wt, b, 1, "cpu", **kw), _run(x, wt, b, 1, "reference", **kw), "modulation")


@bf16_here
def test_bf16_winograd_error_is_bfloat16_sized():
    """Against the float64 conv: more than float32 Winograd's error (the bf16 rounding of V and U), a few times the
    direct bf16 conv's, and far below a wrong result's."""
    torch.manual_seed(4)
    x = torch.randn(1, 64, 24, 24).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(64, 64, 3, 3) / 24
    exact = F.conv2d(x.double(), wt.double(), padding=1)

    def rel(y):
        return ((y.double() - exact).norm() / exact.norm()).item()
    e_wino, e_direct = rel(_run(x, wt, None, 1, "cpu")), rel(conv2d(x, wt, None, 1, 1, backend="cpu", algorithm="bf16"))
    assert 1e-4 < e_wino < 5e-2 and e_wino < 30 * e_direct, (e_wino, e_direct)


@bf16_here
def test_opcheck_bf16_winograd():
    x = torch.randn(1, 32, 9, 9, requires_grad=True)
    w, b = torch.randn(32, 32, 3, 3, requires_grad=True), torch.randn(32, requires_grad=True)
    torch.library.opcheck(_conv2d_op, (x, w, b, None, None, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01,
                                       "bf16_winograd", 1, "cpu"), **tol("fp32"))


def test_bf16_winograd_bad_inputs():
    x = torch.randn(1, 16, 8, 8)
    for w, kw in [(torch.randn(16, 16, 5, 5), {}), (torch.randn(16, 16, 3, 3), dict(stride=2)),
                  (torch.randn(16, 8, 3, 3), dict(groups=2)), (torch.randn(16, 16, 3, 3), dict(dilation=2))]:
        with pytest.raises(ValueError, match="bf16_winograd' runs float32 3x3 convs"):
            conv2d(x, w, padding=1, algorithm="bf16_winograd", backend="reference", **kw)
    with pytest.raises(ValueError, match="float32 3x3"):
        conv2d(x.double(), torch.randn(16, 16, 3, 3).double(), algorithm="bf16_winograd", backend="reference")
    with pytest.raises(BackendUnavailableError, match="bf16_winograd"):
        conv2d(x, torch.randn(16, 16, 3, 3), algorithm="bf16_winograd", backend="triton")


def test_bf16_winograd_without_bf16_says_so():
    """Where the cpu kernels are not AVX-512 (SFT_KERNELS_ISA=avx2, as on a CPU without AMX or AVX512-BF16), the
    op refuses with what to do."""
    code = (
        "import torch, sft_kernels\n"
        "x, w = torch.randn(1, 32, 5, 5), torch.randn(32, 32, 3, 3)\n"
        "try:\n"
        "    sft_kernels.ops.conv2d(x, w, padding=1, backend='cpu', algorithm='bf16_winograd')\n"
        "    raise SystemExit('no error')\n"
        "except RuntimeError as e:\n"
        "    assert 'needs AMX-BF16' in str(e) and 'algorithm=None' in str(e), e\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SFT_KERNELS_ISA": "avx2"},
                         capture_output=True, text=True, timeout=300)
    if "cpu extension" in out.stderr and "not" in out.stderr:
        pytest.skip("cpu extension not built")
    assert out.returncode == 0, out.stderr[-2000:]


@bf16_here
def test_bf16_winograd_backend_none_never_times_the_definition(monkeypatch):
    """backend=None: the reference's bf16 Winograd (its einsum definition, ~100x slower) is not an autotune
    candidate where the cpu kernel runs, neither at the first look nor in the second one (calls 6-9)."""
    from sft_kernels.ops.conv2d import OP
    from sft_kernels.runtime import autotune

    calls = []
    monkeypatch.setitem(OP.impls, "reference", lambda *a: calls.append(1))
    autotune.clear()
    x = torch.randn(1, 32, 12, 12).contiguous(memory_format=torch.channels_last)
    w = torch.randn(32, 32, 3, 3)
    with torch.no_grad():
        for _ in range(12):
            y = conv2d(x, w, None, 1, 1, algorithm="bf16_winograd")
    assert not calls and y.shape == (1, 32, 12, 12)


@bf16_here
def test_convert_bf16_direct_never_runs_winograd():
    """fp32_precision="bf16_direct": bf16 where it pays, never bf16 Winograd (SFTNet's plan puts its 3×3 convs back
    to float32, and measured convs choose between bf16 and float32 only); "ieee" undoes either."""
    import sft_kernels
    from sft_kernels.models import SFTNet
    from sft_kernels.runtime import autotune

    torch.manual_seed(3)
    for model in (SFTNet(num_blocks=1).eval(), torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1)).eval()):
        rep = sft_kernels.convert_(model, fp32_precision="bf16_direct")
        assert "bf16_winograd" not in {r.action for r in rep.rows}
        autotune.clear()
        with torch.no_grad():
            if isinstance(model, SFTNet):
                model(torch.rand(1, 3, 16, 16), torch.rand(1, 8, 64, 64))
            else:
                model(torch.randn(1, 32, 20, 20))
        assert all(v != "bf16_winograd" for k, v in autotune.choices().items() if k[0] == "bf16_direct_or_fp32")
        algorithms = {getattr(m, "algorithm", None) for m in model.modules()}
        assert "bf16_winograd" not in algorithms
        sft_kernels.convert_(model, fp32_precision="ieee")
        assert not algorithms & {getattr(m, "algorithm", None) for m in model.modules()} - {None}
