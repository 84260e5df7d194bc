"""torch.library integration: opcheck for every sft op, torch.compile(fullgraph=True) on a converted model."""
import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.ops.conv2d import _conv2d_op
from sft_kernels.ops.matmul import _matmul_op
from sft_kernels.ops.inverted_residual import _op as _inverted_residual_op
from sft_kernels.ops.separable_conv2d import _separable_op
from sft_kernels.ops.strassen_matmul import _strassen_op
from sft_kernels.testing import tol

from tests.conftest import op_backends


def _conv_args(backend, act, res, layout):
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    if layout == "channels_last":
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 2, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    r = torch.randn(2, 6, 7, 7, requires_grad=True) if res else None
    return (x, w, b, r, None, None, [1, 1], [1, 1], [1, 1], 2, act, 0.1, None, 1, backend)


@pytest.mark.parametrize("backend", op_backends("conv2d"))
@pytest.mark.parametrize("act,res", [(None, False), ("leaky_relu", True)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck_conv2d(backend, act, res, layout):
    torch.library.opcheck(_conv2d_op, _conv_args(backend, act, res, layout))


def test_opcheck_conv2d_winograd():
    if "cpu" not in op_backends("conv2d"):
        pytest.skip("cpu backend not built")
    x = torch.randn(1, 16, 9, 9, requires_grad=True)
    w, b = torch.randn(16, 16, 3, 3, requires_grad=True), torch.randn(16, requires_grad=True)
    torch.library.opcheck(_conv2d_op, (x, w, b, None, None, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01,
                                       "winograd", 1, "cpu"),
                          **tol("fp32"))
    r = torch.randn(1, 4, 18, 18, requires_grad=True)  # pixel shuffle fused in the Winograd store, + residual
    torch.library.opcheck(_conv2d_op, (x, w, b, r, None, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01, "winograd",
                                       2, "cpu"),
                          **tol("fp32"))


@pytest.mark.parametrize("backend", op_backends("matmul"))
def test_opcheck_matmul(backend):
    for sa, sb in [((5, 7), (7, 3)), ((2, 5, 7), (7, 3)), ((7,), (7, 2))]:
        a, b = torch.randn(sa, requires_grad=True), torch.randn(sb, requires_grad=True)
        torch.library.opcheck(_matmul_op, (a, b, backend))


@pytest.mark.parametrize("backend", op_backends("strassen_matmul"))
def test_opcheck_strassen(backend):
    a, b = torch.randn(9, 10, requires_grad=True), torch.randn(10, 7, requires_grad=True)
    torch.library.opcheck(_strassen_op, (a, b, 1, 2, backend))


@pytest.mark.parametrize("backend", op_backends("inverted_residual"))
def test_opcheck_inverted_residual(backend):
    x = torch.randn(1, 4, 7, 6, requires_grad=True)
    g = lambda *shape: torch.randn(*shape, requires_grad=True)
    args = (x, g(12, 4, 1, 1), g(12, 1, 3, 3), g(4, 12, 1, 1), g(12), None, g(4), x, [1, 1], [1, 1], [1, 1], "relu6",
            "relu6", None, 0.01, backend)
    torch.library.opcheck(_inverted_residual_op, args)
    args = (x, g(8, 4, 1, 1), g(16, 1, 3, 3), g(5, 16, 1, 1), None, g(16), None, None, [2, 2], [1, 1], [1, 1], None,
            "leaky_relu", "relu", 0.1, backend)  # stride 2, a channel multiplier of 2
    torch.library.opcheck(_inverted_residual_op, args)


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
def test_opcheck_separable(backend):
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    args = (x, torch.randn(4, 1, 3, 3, requires_grad=True), torch.randn(5, 4, 1, 1, requires_grad=True),
            torch.randn(4, requires_grad=True), None, None, [1, 1], [1, 1], [1, 1], "relu", None, 0.01, 1, backend)
    torch.library.opcheck(_separable_op, args)
    res = torch.randn(1, 5, 3, 3, requires_grad=True)  # stride 2, a channel multiplier of 2, a residual
    args = (x, torch.randn(8, 1, 3, 3, requires_grad=True), torch.randn(5, 8, 1, 1, requires_grad=True), None,
            torch.randn(5, requires_grad=True), res, [2, 2], [1, 1], [1, 1], None, "leaky_relu", 0.1, 1, backend)
    torch.library.opcheck(_separable_op, args)
    res = torch.randn(1, 16, 12, 12, requires_grad=True)  # PixelShuffle(2) of 64 channels, then the residual
    args = (x, torch.randn(4, 1, 3, 3, requires_grad=True), torch.randn(64, 4, 1, 1, requires_grad=True), None,
            torch.randn(64, requires_grad=True), res, [1, 1], [1, 1], [1, 1], "relu", "relu", 0.01, 2, backend)
    torch.library.opcheck(_separable_op, args)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        return self.up(y + self.c2(y))


@pytest.mark.parametrize("backend", [b for b in op_backends("conv2d") if b != "triton"])
def test_compile_fullgraph_converted_model(backend):
    torch._dynamo.reset()
    model = _Net().eval()
    x = torch.randn(2, 3, 9, 11)
    with torch.no_grad():
        expected = model(x)
        sft_kernels.convert_(model, backend=backend)
        compiled = torch.compile(model, fullgraph=True, backend="inductor")
        torch.testing.assert_close(compiled(x), expected, **tol("fp32"))


def test_compile_fullgraph_after_eager_calls():
    """A converted model that already ran eagerly (its layers keep their kernel calls bound, a transposed conv its
    sub-pixel weight) compiles whole: the bound-call key's torch.get_num_threads(), the Linear's extension check and
    the sub-pixel weight's data-pointer key had broken the graph (MobileNetV2 fused: 27 graph breaks, compiled 1.9x
    slower than not compiled)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 16, 1),
                          nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1),
                          nn.Flatten(2), nn.Linear(192, 24), nn.GELU()).eval()
    x = torch.randn(1, 3, 6, 8)
    with torch.no_grad():
        expected = model(x)
        fused = sft_kernels.fuse_for_inference(model, x)
        assert fused.fusion_report[1]["separable"] == 1
        sft_kernels.convert_(model)
        for m in (model, fused):
            m(x), m(x)  # eager calls: bound kernels cached on the layers
            torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="eager")(x), expected,
                                       **tol("fp32"))


def test_compile_fullgraph_functional_default_backend():
    torch._dynamo.reset()

    def f(x, w):
        return sft_kernels.ops.conv2d(x, w, padding=1, activation="relu")

    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    torch.testing.assert_close(torch.compile(f, fullgraph=True)(x, w), f(x, w))


def test_compile_fullgraph_converted_fused_sftnet():
    from sft_kernels.models import SFTNet

    torch._dynamo.reset()
    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=0).eval()
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        expected = model(x)
        sft_kernels.convert_(model)
        assert model.fused
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), expected, **tol("fp32"))


@pytest.mark.parametrize("backend", op_backends("conv2d"))
def test_opcheck_conv2d_modulation(backend):
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    scale, shift = (torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
                    for _ in range(2))
    w, b = torch.randn(8, 8, 3, 3, requires_grad=True), torch.randn(8, requires_grad=True)
    torch.library.opcheck(_conv2d_op, (x, w, b, None, scale, shift, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01, None, 1,
                                       backend), **tol("fp32"))


@pytest.mark.parametrize("backend", op_backends("qconv2d", torch.uint8))
@pytest.mark.parametrize("out_scale", [0.0, 0.05])
def test_opcheck_qconv2d(backend, out_scale):
    from sft_kernels.ops.qconv2d import _qconv2d_op
    g = torch.Generator().manual_seed(0)
    xq = torch.randint(0, 256, (2, 8, 7, 9), dtype=torch.uint8, generator=g)
    wq = torch.randint(-127, 128, (12, 8, 3, 3), dtype=torch.int8, generator=g)
    ws, b, res = torch.rand(12) * 0.01 + 0.001, torch.randn(12), torch.randn(2, 12, 7, 9)
    torch.library.opcheck(_qconv2d_op, (xq, wq, ws, b, res, None, None, 0.02, 3, [1, 1], [1, 1], [1, 1], 1, "relu",
                                        0.01, out_scale, 7, 1, None, 0.0, 0, backend))
    torch.library.opcheck(_qconv2d_op, (xq, wq, ws, b, None, None, None, 0.02, 3, [1, 1], [1, 1], [1, 1], 1, "relu",
                                        0.01, out_scale, 7, 2, None, 0.0, 0, backend))  # PixelShuffle(2) of the result
    x = torch.randn(2, 8, 7, 9)
    torch.library.opcheck(_qconv2d_op, (x, wq, ws, b, None, torch.randn(2, 8, 7, 9), torch.randn(2, 8, 7, 9), 0.05,
                                        128, [2, 2], [1, 1], [1, 1], 1, None, 0.01, out_scale, 0, 1, None, 0.0, 0,
                                        backend))
    # int8 / bfloat16 outputs and a uint8 residual with its own scale and zero point
    res_q = torch.randint(0, 256, (2, 12, 7, 9), dtype=torch.uint8, generator=g)
    out_dtype, zp = (torch.int8, -7) if out_scale > 0 else (torch.bfloat16, 0)
    torch.library.opcheck(_qconv2d_op, (xq, wq, ws, b, res_q, None, None, 0.02, 3, [1, 1], [1, 1], [1, 1], 1,
                                        "leaky_relu", 0.1, out_scale, zp, 1, out_dtype, 0.03, 120, backend))


def test_compile_fullgraph_quantized_model():
    from sft_kernels.nn import QuantConv2d, QuantLinear
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 1),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 12 * 12, 10))
    x = torch.rand(1, 3, 12, 12)
    sft_kernels.quantize_(model, calibration=[x], progress=False)
    assert isinstance(model[0], QuantConv2d) and isinstance(model[4], QuantLinear)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(compiled, eager)


def test_compile_fullgraph_quantized_fused_sftnet(monkeypatch):
    """The int8 fused SFTNet (each SFT layer one sft.qsft_layer call) traces whole and matches eager exactly."""
    from sft_kernels.models import SFTNet, fused

    torch._dynamo.reset()
    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=0).eval()
    sft_kernels.convert_(model)
    sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 8, 8)], progress=False)
    x = torch.rand(1, 3, 6, 5)
    layer_op, calls = fused.ops.qsft_layer, []
    monkeypatch.setattr(fused.ops, "qsft_layer", lambda *a, **k: calls.append(1) or layer_op(*a, **k))
    with torch.no_grad():
        eager = model(x)
    monkeypatch.undo()
    assert len(calls) == 2 * model.num_blocks + 1
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True, backend="eager")(x)
    assert torch.equal(compiled, eager)


def test_compile_fullgraph_matmul_in_a_fresh_process():
    """ops.matmul compiles with fullgraph=True before any eager call (its first check had imported the extension
    while dynamo traced: 'Attempted to call function marked as skipped')."""
    from tests.conftest import run_fresh

    proc = run_fresh("import torch\n"
                     "from sft_kernels.ops import matmul\n"
                     "a, b = torch.randn(3, 7), torch.randn(7, 5)\n"
                     "y = torch.compile(lambda a, b: matmul(a, b), fullgraph=True)(a, b)\n"
                     "assert (y - a @ b).abs().max() < 1e-5\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
