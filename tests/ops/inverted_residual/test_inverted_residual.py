"""sft.inverted_residual on every backend against the three-conv float64 reference: odd sizes, strides, dilation,
channel multipliers, activations, residuals, NCHW / channels_last / sliced inputs, thread counts (the cpu kernel's
window of expanded rows, moved and refilled across chunks and threads), the portable paths (forced ISA), bad
inputs; and fuse_for_inference building the module from a MobileNetV2 block (eager outputs, int8 after it)."""
import io
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.nn import InvertedResidual
from sft_kernels.nn.quantized import is_int8
from sft_kernels.ops import inverted_residual
from sft_kernels.testing import assert_close
from tests.conftest import op_backends
from tests.ops.separable_conv2d.test_separable_conv2d import _layout

CASES = [  # n, c, h, w, e, mult, k, r, stride, padding, dilation, threads
    (2, 5, 13, 11, 24, 1, 7, 3, 1, 1, 1, 1),
    (1, 8, 9, 9, 40, 1, 16, 3, 2, 2, 2, 2),  # stride 2, dilation 2
    (1, 3, 7, 7, 8, 1, 4, 3, 1, 0, 1, 1),  # no padding
    (1, 16, 30, 17, 96, 1, 24, 3, 2, 1, 1, 2),  # MobileNetV2's first block's channels, odd width
    (2, 17, 8, 15, 33, 1, 33, 5, 1, 2, 1, 2),  # 5x5, E not a multiple of 16 (a masked vector tail)
    (1, 6, 11, 9, 12, 2, 10, 3, 2, 1, 1, 1),  # channel multiplier 2
    (1, 24, 40, 6, 144, 1, 24, 3, 1, 1, 1, 1),  # tall image: the window moves many times
    (1, 300, 5, 4, 520, 1, 9, 3, 1, 1, 1, 2),  # C and E deeper than one K slice of the micro-kernel
    (1, 4, 1, 9, 16, 1, 4, 3, 1, 1, 1, 2),  # one row
    (1, 4, 9, 1, 16, 1, 4, 3, 1, 1, 1, 1),  # one-pixel rows
]


def _reference(x, ex, dw, pw, exb, dwb, pwb, st, pd, dl, ex_act, mid, act, slope, res):
    acts = {None: lambda y: y, "relu": F.relu, "relu6": F.relu6, "leaky_relu": lambda y: F.leaky_relu(y, slope),
            "hardswish": F.hardswish}
    d = lambda t: None if t is None else t.double()
    y = acts[ex_act](F.conv2d(x.double(), ex.double(), d(exb)))
    y = acts[mid](F.conv2d(y, dw.double(), d(dwb), st, pd, dl, groups=ex.shape[0]))
    y = acts[act](F.conv2d(y, pw.double(), d(pwb)))
    return y if res is None else y + res.double()


def _weights(c, e, m, k, r):
    return (torch.randn(e, c, 1, 1) / c ** 0.5, torch.randn(e * m, 1, r, r) / r, torch.randn(k, e * m, 1, 1) / e ** 0.5,
            torch.randn(e), torch.randn(e * m), torch.randn(k))


@pytest.mark.parametrize("backend", op_backends("inverted_residual"))
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "slice"])
def test_inverted_residual_matches_three_convs(backend, case, layout):
    n, c, h, w, e, m, k, r, st, pd, dl, threads = case
    x = torch.randn(n, c, h, w)
    ex, dw, pw, exb, dwb, pwb = _weights(c, e, m, k, r)
    p, q = (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (r - 1) - 1) // st + 1
    res = torch.randn(n, k, p, q)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = inverted_residual(_layout(x, layout), ex, dw, pw, exb, dwb, pwb, st, pd, dl, ex_activation="relu6",
                              mid_activation="leaky_relu", activation="relu", negative_slope=0.2, residual=res,
                              backend=backend)
    finally:
        torch.set_num_threads(old)
    ref = _reference(x, ex, dw, pw, exb, dwb, pwb, st, pd, dl, "relu6", "leaky_relu", "relu", 0.2, res)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout != "nchw" else torch.contiguous_format)
    assert_close(y, ref, k=c + r * r + e * m)


@pytest.mark.parametrize("backend", op_backends("inverted_residual"))
@pytest.mark.parametrize("acts", [(None, None, None), ("hardswish", "hardswish", None), ("relu", "relu6", "relu6")])
@pytest.mark.parametrize("biases", [True, False])
def test_inverted_residual_activations_and_biases(backend, acts, biases):
    x = torch.randn(2, 16, 9, 8).contiguous(memory_format=torch.channels_last)
    ex, dw, pw, exb, dwb, pwb = _weights(16, 48, 1, 16, 3)
    if not biases:
        exb = dwb = pwb = None
    y = inverted_residual(x, ex, dw, pw, exb, dwb, pwb, 1, 1, ex_activation=acts[0], mid_activation=acts[1],
                          activation=acts[2], residual=x, backend=backend)
    assert_close(y, _reference(x, ex, dw, pw, exb, dwb, pwb, 1, 1, 1, *acts, 0.01, x), k=16 + 9 + 48)


@pytest.mark.skipif("cpu" not in op_backends("inverted_residual"), reason="cpu backend not built")
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_cpu_portable_paths(isa):
    """The fused kernel without AVX-512: scalar depthwise, packed-A micro-kernels (a fresh process per ISA)."""
    code = ("import torch, torch.nn.functional as F\n"
            "from sft_kernels.ops import inverted_residual\n"
            "torch.manual_seed(0)\n"
            "for c, e, m, st, k in ((13, 24, 1, 1, 21), (8, 16, 2, 2, 21), (300, 520, 1, 1, 9)):\n"
            "    x = torch.randn(2, c, 11, 9); ex = torch.randn(e, c, 1, 1)\n"
            "    dw = torch.randn(e * m, 1, 3, 3); pw = torch.randn(k, e * m, 1, 1)\n"
            "    y = inverted_residual(x, ex, dw, pw, None, None, None, st, 1, ex_activation='relu6',\n"
            "                          mid_activation='relu', backend='cpu')\n"
            "    ref = F.relu6(F.conv2d(x.double(), ex.double()))\n"
            "    ref = F.conv2d(F.relu(F.conv2d(ref, dw.double(), None, st, 1, 1, e)), pw.double())\n"
            "    assert (y.double() - ref).abs().max() < 1e-4 * ref.abs().max(), (y.double() - ref).abs().max()\n")
    env = dict(os.environ, SFT_KERNELS_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if "cannot run" in proc.stderr:
        pytest.skip(f"this CPU cannot run {isa}")
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("backend", op_backends("inverted_residual"))
def test_inverted_residual_empty_batch(backend):
    ex, dw, pw = torch.randn(8, 4, 1, 1), torch.randn(8, 1, 3, 3), torch.randn(5, 8, 1, 1)
    y = inverted_residual(torch.randn(0, 4, 6, 6), ex, dw, pw, padding=1, backend=backend)
    assert y.shape == (0, 5, 6, 6)


def test_inverted_residual_bad_inputs():
    x = torch.randn(1, 8, 6, 6)
    ex, dw, pw = torch.randn(16, 8, 1, 1), torch.randn(16, 1, 3, 3), torch.randn(8, 16, 1, 1)
    with pytest.raises(ValueError, match=r"ex_weight must have shape \(E, 8, 1, 1\)"):
        inverted_residual(x, torch.randn(16, 4, 1, 1), dw, pw)
    with pytest.raises(ValueError, match="channel mismatch"):  # the depthwise conv reads E = 16 channels
        inverted_residual(x, ex, torch.randn(16, 2, 3, 3), pw)
    with pytest.raises(ValueError, match=r"pw_weight must have shape \(K, 16, 1, 1\)"):
        inverted_residual(x, ex, dw, torch.randn(8, 12, 1, 1))
    with pytest.raises(ValueError, match="ex_bias must have 16 elements"):
        inverted_residual(x, ex, dw, pw, torch.randn(3))
    with pytest.raises(ValueError, match="residual"):
        inverted_residual(x, ex, dw, pw, padding=1, residual=torch.randn(1, 8, 5, 5))
    with pytest.raises(TypeError, match="dtype"):
        inverted_residual(x, ex.double(), dw, pw)
    with pytest.raises(ValueError, match="activation"):
        inverted_residual(x, ex, dw, pw, ex_activation="tanh")


@pytest.mark.skipif("cpu" not in op_backends("inverted_residual"), reason="cpu backend not built")
def test_inverted_residual_opcheck():
    x = torch.randn(1, 8, 7, 6).contiguous(memory_format=torch.channels_last)
    ex, dw, pw, exb, dwb, pwb = _weights(8, 16, 1, 8, 3)
    torch.library.opcheck(torch.ops.sft.inverted_residual.default,
                          (x, ex, dw, pw, exb, dwb, pwb, x, [1, 1], [1, 1], [1, 1], "relu6", "relu6", None, 0.01,
                           "cpu"))


class _Block(nn.Module):  # MobileNetV2's inverted residual (t = 6), batch norms with non-trivial statistics
    def __init__(self, c, k, stride):
        super().__init__()
        e = 6 * c

        def bn(n):
            b = nn.BatchNorm2d(n)
            b.running_mean.uniform_(-0.5, 0.5), b.running_var.uniform_(0.5, 2), b.weight.data.uniform_(0.5, 1.5)
            return b
        self.use_res = stride == 1 and c == k
        self.conv = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), bn(e), nn.ReLU6(inplace=True),
                                  nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), bn(e), nn.ReLU6(inplace=True),
                                  nn.Conv2d(e, k, 1, bias=False), bn(k))

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


def test_fuse_for_inference_builds_inverted_residuals():
    """Two blocks (one with its residual, one strided) become InvertedResidual modules whose outputs match eager
    for NCHW and channels_last inputs, that export to ONNX (checked in onnxruntime) and take gradients; then
    quantize_ runs them as int8 convs."""
    torch.manual_seed(0)
    model = nn.Sequential(_Block(8, 8, 1), _Block(8, 12, 2)).eval()
    x = torch.randn(2, 8, 15, 13)
    with torch.no_grad():
        ref = model(x)
    fused = sft_kernels.fuse_for_inference(model, x)
    irs = [m for m in fused.modules() if isinstance(m, InvertedResidual)]
    assert fused.fusion_report[1]["inverted_residual"] == len(irs) == (2 if "cpu" in op_backends(
        "inverted_residual") else 0)
    if not irs:
        return
    assert irs[0].ex_activation == "relu6" and irs[0].mid_activation == "relu6"
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            for _ in range(2):  # the second call runs the bound call
                assert_close(fused(inp), ref.double(), k=8 + 9 + 48)
    buf = io.BytesIO()  # ONNX: the three convs as standard ops, checked in onnxruntime against the model
    sft_kernels.export_onnx(fused, x, buf)
    assert buf.getbuffer().nbytes > 0
    xg = x.clone().requires_grad_()
    fused(xg).sum().backward()  # training path: PyTorch's three convs
    assert xg.grad is not None and xg.grad.shape == x.shape
    sft_kernels.quantize_(fused, sft_kernels.Int8Config(), calibration=[torch.randn(2, 8, 15, 13)])
    assert all(is_int8(m) for ir in irs for m in (ir.ex, ir.dw, ir.pw))
    with torch.no_grad():
        yq = fused(x)
    assert yq.shape == ref.shape and torch.isfinite(yq).all()
    sqnr = 10 * torch.log10(ref.pow(2).mean() / (yq - ref).pow(2).mean())
    assert sqnr > 25, sqnr


@pytest.mark.skipif("cpu" not in op_backends("inverted_residual"), reason="cpu backend not built")
def test_fused_block_under_torch_compile():
    """The fused module under torch.compile(fullgraph=True): the op's fake kernel traces, the kernel runs."""
    torch.manual_seed(0)
    model = nn.Sequential(_Block(8, 8, 1), _Block(8, 12, 2)).eval()
    x = torch.randn(2, 8, 15, 13)
    fused = sft_kernels.fuse_for_inference(model, x)
    compiled = torch.compile(fused, fullgraph=True)
    with torch.no_grad():
        assert_close(compiled(x), model(x).double(), k=8 + 9 + 48)
