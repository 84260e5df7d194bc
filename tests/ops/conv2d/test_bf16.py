"""sft.conv2d(algorithm="bf16"): float32 tensors computed in bfloat16 (AMX tiles or AVX512-BF16 vectors on the cpu
backend; SFT_KERNELS_BF16=vectors runs this file again on the vectors where AMX is the default) against its
definition, a float64 conv of the bf16-rounded input (after any modulation) and weight, with the float32 epilogue;
convert_(fp32_precision="bf16") on SFTNet and another CNN; clear errors where it cannot run."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.backends import BackendUnavailableError, bf16_available, bf16_unit
from sft_kernels.ops import conv2d
from sft_kernels.ops.conv2d import _conv2d_op
from sft_kernels.runtime import autotune
from sft_kernels.reference import conv2d as ref_conv2d
from sft_kernels.testing import assert_close, tol

bf16_here = pytest.mark.skipif(not bf16_available(),
                               reason="neither AMX-BF16 nor AVX512-BF16 here (or the cpu extension is missing)")
# On AVX512-BF16 vectors (no AMX) convert_ leaves 3×3 stride-1 convs to measurement (our float32 Winograd conv is
# faster on large maps).
VECTORS = bf16_unit() == "vectors"

# (N, C, H, W, K, R, S, stride, padding, dilation): channel and output tails (C, K not multiples of 32), stride 2,
# dilation, asymmetric padding, 1×1, narrow images (flat blocks across rows), wide rows (several blocks per row)
SHAPES = [
    (2, 20, 13, 11, 40, 3, 3, 1, 1, 1),
    (1, 64, 12, 12, 64, 3, 3, 1, 1, 1),
    (1, 48, 19, 21, 70, 5, 3, 2, (2, 1), 1),
    (1, 32, 9, 9, 33, 3, 3, 1, 2, 2),
    (1, 64, 7, 7, 256, 1, 1, 1, 0, 1),
    (3, 16, 5, 40, 16, 3, 3, (1, 2), 1, 1),
    (1, 100, 14, 14, 96, 3, 3, 1, 1, 1),
    (1, 8, 17, 70, 24, 4, 4, 4, 0, 1),
    (2, 40, 6, 75, 36, 3, 3, 1, 1, (2, 1)),
    (1, 3, 11, 13, 5, 3, 3, 2, 1, 1),
]


def _definition(x, w, b, stride, padding, dilation, act=None, slope=0.01, residual=None, shuffle=1, mod=None):
    """float64 conv of the bf16-rounded operands; the modulation rounded in float32 first, as the kernel does."""
    if mod is not None:
        x = x * (mod[0] + 1) + mod[1]
    xd, wd = x.to(torch.bfloat16).double(), w.to(torch.bfloat16).double()
    return ref_conv2d(xd, wd, None if b is None else b.double(), stride, padding, dilation, 1, act, slope,
                      None if residual is None else residual.double(), shuffle)


@bf16_here
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bf16_matches_definition(shape, layout):
    n, c, h, w, k, r, s, st, pd, dl = shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    wt, b = torch.randn(k, c, r, s) * 0.2, torch.randn(k)
    y = conv2d(x, wt, b, st, pd, dl, backend="cpu", algorithm="bf16")
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert_close(y, _definition(x, wt, b, st, pd, dl), k=c * r * s, msg=str(shape))
    # the reference backend is the same definition
    assert_close(conv2d(x, wt, b, st, pd, dl, backend="reference", algorithm="bf16"),
                 _definition(x, wt, b, st, pd, dl), k=c * r * s)


@bf16_here
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "silu", "gelu"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_epilogue_residual_and_bands(act, threads):
    """Activation and residual in the store; an image of several bands per thread (its padded bf16 rows past the
    1 MB band budget), so rows are refilled between bands."""
    torch.manual_seed(1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 64, 150, 37).contiguous(memory_format=torch.channels_last)
        wt, b = torch.randn(40, 64, 3, 3) * 0.1, torch.randn(40)
        res = torch.randn(1, 40, 150, 37).contiguous(memory_format=torch.channels_last)
        y = conv2d(x, wt, b, 1, 1, activation=act, negative_slope=0.2, residual=res, backend="cpu",
                   algorithm="bf16")
        assert_close(y, _definition(x, wt, b, 1, 1, 1, act, 0.2, res), k=64 * 9)
        wide = torch.randn(1, 64, 40, 600).contiguous(memory_format=torch.channels_last)  # 19 blocks per row
        assert_close(conv2d(wide, wt, b, 1, 1, backend="cpu", algorithm="bf16"), _definition(wide, wt, b, 1, 1, 1),
                     k=64 * 9)
    finally:
        torch.set_num_threads(old)


@bf16_here
@pytest.mark.parametrize("c,k,r", [(64, 256, 2), (40, 128, 2), (16, 288, 3), (64, 96, 2)])
def test_bf16_pixel_shuffle_and_modulation(c, k, r):
    """PixelShuffle(r) written by the store (K / r² a multiple of 32: sub-pixel-ordered panels), else after the
    conv (64→96, r = 2); SFT modulation applied as the input is rounded; a residual after the shuffle."""
    torch.manual_seed(2)
    x = torch.randn(2, c, 9, 12).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c, 3, 3) * 0.1, torch.randn(k)
    res = torch.randn(2, k // (r * r), 9 * r, 12 * r).contiguous(memory_format=torch.channels_last)
    sc, sh = torch.randn_like(x) * 0.1, torch.randn_like(x)
    for mod in (None, (sc, sh)):
        y = conv2d(x, wt, b, 1, 1, activation="relu", residual=res, pixel_shuffle=r, modulation=mod,
                   backend="cpu", algorithm="bf16")
        assert_close(y, _definition(x, wt, b, 1, 1, 1, "relu", residual=res, shuffle=r, mod=mod), k=c * 9)


@bf16_here
def test_bf16_reads_channel_slices_and_nchw_residual():
    """A channels_last slice (pixel pitch wider than C) read in place; an NCHW residual added after the store."""
    torch.manual_seed(3)
    big = torch.randn(1, 96, 10, 11).contiguous(memory_format=torch.channels_last)
    x = big[:, 16:64]
    wt, b = torch.randn(33, 48, 3, 3) * 0.1, torch.randn(33)
    res = torch.randn(1, 33, 10, 11)
    y = conv2d(x, wt, b, 1, 1, residual=res, backend="cpu", algorithm="bf16")
    assert_close(y, _definition(x.contiguous(), wt, b, 1, 1, 1, residual=res), k=48 * 9)


@bf16_here
def test_bf16_error_is_bfloat16_sized():
    """Against float32 the difference is bf16 rounding (~2^-9 relative per operand), not a kernel error: far above
    float32's and far below a wrong result's."""
    torch.manual_seed(4)
    x = torch.randn(1, 64, 16, 16).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(64, 64, 3, 3) * 0.05
    y = conv2d(x, wt, None, 1, 1, backend="cpu", algorithm="bf16")
    exact = F.conv2d(x.double(), wt.double(), padding=1)
    rel = ((y.double() - exact).norm() / exact.norm()).item()
    assert 1e-4 < rel < 1e-2, rel


@bf16_here
def test_opcheck_bf16():
    x = torch.randn(1, 32, 9, 9, requires_grad=True)
    w, b = torch.randn(32, 32, 3, 3, requires_grad=True), torch.randn(32, requires_grad=True)
    torch.library.opcheck(_conv2d_op, (x, w, b, None, None, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01, "bf16", 1,
                                       "cpu"), **tol("fp32"))


def test_bf16_bad_inputs():
    x, w = torch.randn(1, 16, 8, 8), torch.randn(16, 8, 3, 3)
    with pytest.raises(BackendUnavailableError, match="algorithm='bf16'.*bfloat16 tensors"):
        conv2d(x, w, groups=2, backend="triton", algorithm="bf16")
    if bf16_available():
        with pytest.raises(RuntimeError, match="ungrouped convs"):
            conv2d(x, w, padding=1, groups=2, backend="cpu", algorithm="bf16")
        with pytest.raises(TypeError, match="float32"):
            conv2d(x.double(), w[:, :16].double().repeat(1, 2, 1, 1), backend="cpu", algorithm="bf16")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        conv2d(x, w, groups=2, algorithm="bfloat16")
    with pytest.raises(ValueError, match="fp32_precision must be one of"):
        sft_kernels.convert_(nn.Sequential(nn.Conv2d(3, 8, 3)), fp32_precision="tf32")


def test_bf16_without_amx_says_so():
    """Where the cpu kernels are not AVX-512 (SFT_KERNELS_ISA=avx2, as on a CPU without AMX), the op refuses with
    what to do, and convert_ warns and keeps the model float32."""
    code = (
        "import warnings, torch, torch.nn as nn, sft_kernels\n"
        "from sft_kernels.backends import bf16_available\n"
        "assert not bf16_available()\n"
        "m = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1))\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    rep = sft_kernels.convert_(m, fp32_precision='bf16')\n"
        "assert any('AMX-BF16' in str(x.message) for x in w), [str(x.message) for x in w]\n"
        "assert m[0].algorithm is None and rep.names('float32') == ['']\n"
        "x = torch.randn(1, 32, 5, 5)\n"
        "try:\n"
        "    sft_kernels.ops.conv2d(x, m[0].weight, backend='cpu', algorithm='bf16')\n"
        "    raise SystemExit('no error')\n"
        "except RuntimeError as e:\n"
        "    assert 'needs AMX-BF16' in str(e), e\n"
    )
    env = {**os.environ, "SFT_KERNELS_ISA": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if "cpu extension" in out.stderr and "not" in out.stderr:
        pytest.skip("cpu extension not built")
    assert out.returncode == 0, out.stderr[-2000:]


class _Net(nn.Module):
    """A small CNN with what the bf16 rule keeps float32: an RGB stem, a depthwise conv, a memory-bound 1×1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.body = nn.Conv2d(32, 64, 3, padding=1)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.thin = nn.Conv2d(64, 16, 1)
        self.head = nn.Conv2d(16, 48, 3, stride=2, padding=1)
        self.up = nn.Conv2d(48, 128, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.body(x)) + 0
        x = self.thin(self.dw(x))
        return F.pixel_shuffle(self.up(F.relu(self.head(x))), 2)


@bf16_here
def test_convert_bf16_reports_and_runs_each_conv():
    torch.manual_seed(5)
    net = _Net().eval()
    x = torch.randn(2, 3, 20, 24)
    with torch.no_grad():
        want = net(x)
    rep = sft_kernels.convert_(net, fp32_precision="bf16")
    assert rep.names("bf16") == (["head"] if VECTORS else ["body", "head", "up"])
    assert rep.names("measured") == (["body", "up"] if VECTORS else [])
    why = dict((r.name, r.detail) for r in rep.rows if r.action == "float32")
    assert set(why) == {"stem", "dw", "thin"}
    assert "input channels" in why["stem"] and "grouped" in why["dw"] and "memory-bound" in why["thin"]
    three = "bf16_or_fp32" if VECTORS else "bf16"
    assert [net.get_submodule(n).algorithm for n in ("stem", "body", "dw", "head", "up")] == [None, three, None,
                                                                                               "bf16", three]
    with torch.no_grad():
        got = net(x)
    assert got.shape == want.shape and not torch.equal(got, want)
    rel = ((got - want).norm() / want.norm()).item()
    assert rel < 2e-2, rel
    if VECTORS:  # each measured conv's choice is cached per signature, as the autotuner's
        assert sum(k[0] == "bf16_or_fp32" for k in autotune.choices()) >= 2
    sft_kernels.convert_(net, fp32_precision="ieee")  # back to float32: eager's values
    with torch.no_grad():
        torch.testing.assert_close(net(x), want, **tol("fp32"))
    sft_kernels.convert_(net, fp32_precision="bf16")
    sft_kernels.revert_(net)
    assert type(net.body) is nn.Conv2d and not hasattr(net.body, "algorithm")
    rep = sft_kernels.convert_(net, backend="reference", fp32_precision="bf16")  # bf16 is the cpu backend's
    assert rep.names("bf16") == [] and "cpu backend" in dict((r.name, r.detail) for r in rep.rows)["body"]
    sft_kernels.revert_(net)
    assert type(net.body) is nn.Conv2d and not hasattr(net.body, "algorithm")


@bf16_here
def test_convert_bf16_sftnet():
    """SFTNet's fused forward: trunk / HR / condition convs and each SFT layer as one op (ops.sft_layer(bf16=True))
    in bf16 (the model's own plan), output within bf16 rounding of eager's."""
    from sft_kernels.models import SFTNet

    torch.manual_seed(6)
    model = SFTNet(num_blocks=2).eval()
    img, seg = torch.rand(1, 3, 24, 20), torch.rand(1, 8, 96, 80)
    with torch.no_grad():
        want = model(img, seg)
    rep = sft_kernels.convert_(model, fp32_precision="bf16")
    rows = {r.name: (r.action, r.detail) for r in rep.rows if r.action in ("bf16", "float32", "bf16_winograd")}
    assert rows["sft_branch.0.sft0.SFT_scale_conv0"][0] == "bf16"
    assert rows["sft_branch.0.sft0.SFT_scale_conv1"] == ("bf16", rows["sft_branch.0.sft0.SFT_shift_conv1"][1])
    assert "sft_layer" in rows["sft_branch.0.sft0.SFT_scale_conv1"][1]
    three = "bf16_winograd" if VECTORS else "bf16"  # 3×3 stride-1 convs: bf16 Winograd on vectors
    assert rows["sft_branch.0.conv0"][0] == three and rows["HR_branch.0"][0] == three
    assert rows["HR_branch.8"][0] == ("float32" if VECTORS else "bf16")  # 64→3: no faster in bf16 Winograd
    assert rows["conv0"][0] == "float32"  # RGB input: 3 of 32 channels (the AMX rule keeps it float32 too)
    assert rows["CondNet.2"][0] == "bf16"  # a 1×1 128→128
    with torch.no_grad():
        got = model(img, seg)
    rel = ((got - want).norm() / want.norm()).item()
    # bf16 Winograd rounds the transformed tiles: ~2-5x the direct bf16 conv's error on trained weights (the
    # teacher's PSNR moves < 0.005 dB), more on these random ones
    assert 0 < rel < (3e-2 if VECTORS else 1e-2), rel


@bf16_here
@pytest.mark.parametrize("case", [(1, 64, 256, 17, 20, 2, 1), (2, 20, 40, 9, 13, 1, 2), (1, 64, 3, 20, 20, 1, 1),
                                  (1, 40, 96, 6, 7, 2, 1)], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_bf16_maps_handed_over(case, layout):
    """The kernel's bf16 hand-over (SFTNet's fused forward between bf16 convs): out_dtype=bfloat16 gives the float32
    output rounded to nearest even, and a bfloat16 input the float32 input's result (the kernel rounds it anyway);
    pixel shuffle in the store (64→256) and after the conv (40→96), a residual, stride 2."""
    n, c, k, h, w, r, st = case
    torch.manual_seed(7)
    x = torch.randn(n, c, h, w)
    x = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    wt, b = torch.randn(k, c, 3, 3) * 0.1, torch.randn(k)
    p, q = (h - 1) // st + 1, (w - 1) // st + 1
    res = torch.randn(n, k // (r * r), p * r, q * r).contiguous(memory_format=torch.channels_last)
    op = torch.ops.sft_cpu.conv2d.default
    args = ([st, st], [1, 1], [1, 1], 1, 1, 0.0, res, 4, r, None, None)
    y32 = op(x, wt, b, *args)
    y16 = op(x, wt, b, *args, torch.bfloat16)
    assert y16.dtype == torch.bfloat16 and y16.shape == y32.shape
    assert torch.equal(y16, y32.to(torch.bfloat16))
    xr = x.to(torch.bfloat16)
    assert torch.equal(op(xr, wt, b, *args), op(xr.float(), wt, b, *args))
    assert torch.equal(op(xr, wt, b, *args, torch.bfloat16), op(xr.float(), wt, b, *args).to(torch.bfloat16))


@bf16_here
def test_bf16_handover_bad_inputs():
    op = torch.ops.sft_cpu.conv2d.default
    x, w = torch.randn(1, 16, 6, 6), torch.randn(16, 16, 3, 3)
    with pytest.raises(RuntimeError, match="bfloat16 input with algorithm='bf16' only"):
        op(x.to(torch.bfloat16), w, None, [1, 1], [1, 1], [1, 1], 1, 0, 0.0, None, 0, 1, None, None)
    with pytest.raises(RuntimeError, match="out_dtype float32, or bfloat16 with algorithm='bf16'"):
        op(x, w, None, [1, 1], [1, 1], [1, 1], 1, 0, 0.0, None, 1, 1, None, None, torch.bfloat16)
    with pytest.raises(RuntimeError, match="a bfloat16 input takes no modulation"):
        op(x.to(torch.bfloat16), w, None, [1, 1], [1, 1], [1, 1], 1, 0, 0.0, None, 4, 1, x, x)


@bf16_here
def test_sftnet_bf16_handover_same_bits():
    """SFTNet's HR branch and condition network hand bf16 maps between bf16 convs under no_grad: the same output as
    with float32 maps; with gradients needed the float32 path runs (and gradients flow)."""
    from sft_kernels.models import SFTNet, fused

    torch.manual_seed(8)
    model = SFTNet(num_blocks=1).eval()
    sft_kernels.convert_(model, fp32_precision="bf16")
    img, seg = torch.rand(1, 3, 12, 10), torch.rand(1, 8, 48, 40)
    calls = []
    real = fused._bf16_handover
    with torch.no_grad():
        fused._bf16_handover = lambda *a: calls.append(real(*a)) or calls[-1]
        try:
            with_handover = model(img, seg)
        finally:
            fused._bf16_handover = real
        fused._bf16_handover = lambda *a: False
        try:
            without = model(img, seg)
        finally:
            fused._bf16_handover = real
    assert any(calls) and with_handover.dtype == torch.float32
    assert torch.equal(with_handover, without)
    out = model(img.requires_grad_(), seg)
    out.sum().backward()
    assert img.grad is not None and torch.equal(out.detach(), with_handover)


def test_bf16_on_vectors_where_amx_is_the_default():
    """SFT_KERNELS_BF16=vectors: this file's and the bf16 SFT ops' tests again on AVX512-BF16 vectors (vdpbf16ps), the
    path AMD Zen 4 runs, on a CPU where AMX would run them (elsewhere the in-process run above is that path)."""
    if bf16_unit() != "amx":
        pytest.skip("the tests above ran on vectors (or nothing) already")
    env = {**os.environ, "SFT_KERNELS_BF16": "vectors"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
           os.path.join(os.path.dirname(__file__), "test_bf16_winograd.py"), "tests/ops/sft_layer",
           "tests/ops/sft_modulation", "-k", "not where_amx_is_the_default and not without_amx and not without_bf16"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    if "has no AVX512-BF16" in out.stdout + out.stderr:
        pytest.skip("this CPU has no AVX512-BF16")
    assert out.returncode == 0 and " passed" in out.stdout, (out.stdout + out.stderr)[-3000:]


def test_bf16_unit_env_bad_value():
    code = "import sft_kernels.backends as b\ntry:\n    b.bf16_unit()\nexcept RuntimeError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SFT_KERNELS_BF16": "tiles"},
                         capture_output=True, text=True, timeout=300)
    if "cpu extension" in out.stderr and "not" in out.stderr:
        pytest.skip("cpu extension not built")
    assert "SFT_KERNELS_BF16 must be amx or vectors" in out.stdout, out.stdout + out.stderr[-1000:]


@bf16_here
@pytest.mark.parametrize("hw", [(40, 36), (6, 7)], ids=str)
def test_bf16_or_fp32_measured(hw, monkeypatch):
    """Conv2d(algorithm="bf16_or_fp32") runs bf16, bf16 Winograd or the float32 choice, whichever pick() timed
    fastest for the signature, and float32 without autotuning; its output is that algorithm's."""
    from sft_kernels.nn import Conv2d

    torch.manual_seed(9)
    conv = Conv2d(64, 64, 3, padding=1, activation="relu").eval()
    x = torch.randn(1, 64, *hw).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = {a: conv2d(x, conv.weight, conv.bias, 1, 1, activation="relu", backend="cpu", algorithm=a)
                for a in (None, "bf16", "bf16_winograd")}
        conv.algorithm = "bf16_or_fp32"
        autotune.clear()
        got = conv(x)
        chosen = [v for k, v in autotune.choices().items() if k[0] == "bf16_or_fp32"]
        assert chosen in (["fp32"], ["bf16"], ["bf16_winograd"])
        torch.testing.assert_close(got, want[None if chosen[0] == "fp32" else chosen[0]], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(conv(x), got, rtol=0, atol=0)  # the bound kernel keeps the choice
        monkeypatch.setenv("SFT_KERNELS_AUTOTUNE", "0")
        autotune.clear()
        torch.testing.assert_close(conv(x), want[None], rtol=1e-5, atol=1e-5)
        assert not any(k[0] == "bf16_or_fp32" for k in autotune.choices())


@bf16_here
def test_bf16_or_fp32_second_look():
    """The measured choice is timed again over its signature's next calls (autotune.SecondLook), every module of the
    signature sharing one look; until it settles each call's result is the first choice's, then the final choice
    runs (bound), and autotune.clear() drops a look in progress. A call that builds a graph starts none."""
    from sft_kernels.nn import Conv2d
    from sft_kernels.nn import conv as nn_conv

    torch.manual_seed(10)
    convs = [Conv2d(32, 32, 3, padding=1, algorithm="bf16_or_fp32").eval() for _ in range(2)]
    x = torch.randn(1, 32, 24, 20).contiguous(memory_format=torch.channels_last)
    autotune.clear()
    want = [{a: conv2d(x, c.weight, c.bias, 1, 1, backend="cpu", algorithm=a).detach()
             for a in (None, "bf16", "bf16_winograd")} for c in convs]
    with torch.no_grad():
        first = convs[0](x)
        (key, look), = nn_conv._LOOKS.items()
        assert key[0] == "bf16_or_fp32" and isinstance(look, autotune.SecondLook)
        algo = None if look.chosen == "fp32" else look.chosen
        torch.testing.assert_close(first, want[0][algo], rtol=0, atol=0)
        steps = len(look.plan)
        for i in range(steps - 1):
            c = i % 2
            torch.testing.assert_close(convs[c](x), want[c][algo], rtol=0, atol=0)
            assert convs[c].__dict__.get("_fast") is None  # not bound while the look times
        assert not nn_conv._LOOKS and sum(len(t) for t in look.times.values()) == steps + 2 * autotune.SecondLook.ROUNDS
        final = autotune.choices()[key]
        final = None if final == "fp32" else final
        for c in (0, 1, 0):
            torch.testing.assert_close(convs[c](x), want[c][final], rtol=0, atol=0)
        assert convs[0].__dict__.get("_fast") is not None
        autotune.clear()
        convs[1](x)
        assert nn_conv._LOOKS
        autotune.clear()
        assert not nn_conv._LOOKS
    xg = x.clone().requires_grad_()
    convs[0](xg).sum().backward()  # measured, but not timed again while building a graph
    assert not nn_conv._LOOKS and xg.grad is not None
