"""fuse_for_inference: conv → batch norm → activation chains and residual adds folded into converted convs."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.nn import Conv2d
from sft_kernels.testing import assert_close, tol

from tests.conftest import op_backends


class Block(nn.Module):
    """A ResNet bottleneck in miniature, its downsample path computed after the main one (as torchvision's)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.conv3, self.bn3 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv4, self.conv5 = nn.Conv2d(8, 16, 1), nn.Conv2d(8, 16, 1)
        self.shift = nn.Parameter(torch.randn(1, 16, 1, 1))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        out = torch.relu(y + self.down(x))
        again = self.bn3(self.conv3(x)) + self.conv3(x)  # conv3 is called twice: nothing folds into it
        read_twice = self.conv5(x)  # this output is read twice: no ReLU folds into conv5
        return out + F.relu(again) + F.relu(read_twice) + read_twice + (self.conv4(x) + self.shift)  # broadcast


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), Block(),
                      nn.Conv2d(16, 16, 3, padding=1), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(16, 5)).eval()
    return _bn_statistics(m)


def _bn_statistics(m):
    """`m` with batch norm statistics and affine parameters that make folding matter."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    return m


@pytest.mark.parametrize("backend", [b for b in op_backends("conv2d") if b in ("reference", "cpu")])
def test_fused_model_matches_eager(backend):
    model, x = _model(), torch.randn(2, 3, 12, 11)
    gm = sft_kernels.fuse_for_inference(model, x, backend=backend)
    report, folded = gm.fusion_report
    assert folded == {"batch_norm": 4, "scale": 0, "activation": 3, "separable": 0, "inverted_residual": 0,
                      "residual": 1}
    assert len(report.converted) == 9 and type(gm.get_submodule("8")) is sft_kernels.nn.Linear  # 8 convs, the head
    assert [type(m) for m in gm.modules() if isinstance(m, nn.BatchNorm2d)] == [nn.BatchNorm2d]  # bn3 stays
    acts = {name: m.activation for name, m in gm.named_modules() if isinstance(m, Conv2d)}
    assert acts == {"0": "relu", "3.conv1": "relu", "3.conv2": None, "3.down.0": None, "3.conv3": None,
                    "3.conv4": None, "3.conv5": None, "4": "leaky_relu"}
    residual = [n.target for n in gm.graph.nodes if n.op == "call_module" and "residual" in n.kwargs]
    assert residual in (["3.conv2"], ["3.down.0"])
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), **tol("fp32"))
    assert isinstance(model[1], nn.BatchNorm2d)  # the original is untouched


@pytest.mark.parametrize("backend", [b for b in op_backends("conv2d") if b in ("reference", "cpu")])
def test_pruned_model_folds_into_its_sparse_convs(backend):
    """After prune_, batch norms, activations and residual adds fold into the SparseConv2d modules as into dense
    convs (a batch norm scales whole output channels: the pruned zeros stay zero, the masks unchanged)."""
    model, x = _model(), torch.randn(2, 3, 12, 11)
    sft_kernels.prune_(model, sft_kernels.PruneConfig(sparsity=0.9))
    gm = sft_kernels.fuse_for_inference(model, x, backend=backend)
    _, folded = gm.fusion_report
    assert folded == {"batch_norm": 4, "scale": 0, "activation": 3, "separable": 0, "inverted_residual": 0,
                      "residual": 1}
    sparse = {name: m for name, m in gm.named_modules() if isinstance(m, sft_kernels.nn.SparseConv2d)}
    assert sparse["0"].activation == "relu" and sparse["3.conv1"].activation == "relu"
    before = {name: m.mask for name, m in model.named_modules() if isinstance(m, sft_kernels.nn.SparseConv2d)}
    assert set(sparse) == set(before)
    for name, m in sparse.items():
        assert torch.equal(m.mask, before[name]) and not m.weight[~m.mask].any(), name
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), **tol("fp32"))


def test_residuals_need_an_example_input():
    gm = sft_kernels.fuse_for_inference(_model())
    assert gm.fusion_report[1]["residual"] == 0
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), _model()(x), **tol("fp32"))


def test_a_conv_with_its_own_epilogue_keeps_what_follows():
    """A conv converted before with an activation: a batch norm after it cannot be folded into its weights."""
    torch.manual_seed(0)
    model = nn.Sequential(Conv2d(3, 8, 3, padding=1, activation="relu"), nn.BatchNorm2d(8), nn.ReLU()).eval()
    model[1].running_mean.uniform_(-1, 1)
    x = torch.randn(1, 3, 8, 8)
    gm = sft_kernels.fuse_for_inference(model, x)
    assert gm.fusion_report[1] == {"batch_norm": 0, "scale": 0, "activation": 0, "separable": 0,
                                   "inverted_residual": 0, "residual": 0}
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expand, depthwise 3×3, 1×1 project, each with a batch norm, ReLU6 between, and the
    residual add; then a depthwise conv whose output a 1×1 conv and a slice read (not fused)."""

    def __init__(self, c=16, t=4, stride=1):
        super().__init__()
        h = c * t
        self.b = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True),
                               nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                               nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
        self.dw, self.pw = nn.Conv2d(c, 2 * c, 3, padding=1, groups=c), nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        y = x + self.b(x)
        d = F.relu6(self.dw(y))
        return self.pw(d) + d[:, :16]


def test_depthwise_then_pointwise_fuses_into_one_separable_conv():
    """After batch norms and ReLU6 fold, a depthwise conv whose output only a 1×1 conv reads runs with it as one
    SeparableConv2d (the fused cpu kernel), and the block's residual add joins its epilogue."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), InvertedResidual(), InvertedResidual()).eval()
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 23, 30)
    gm = sft_kernels.fuse_for_inference(model, x)
    folded = gm.fusion_report[1]
    # with the cpu kernel, each expand conv joins its separable conv as one InvertedResidual (a SeparableConv2d)
    ir = 2 if "cpu" in op_backends("inverted_residual") else 0
    assert folded == {"batch_norm": 6, "scale": 0, "activation": 7, "separable": 2, "inverted_residual": ir,
                      "residual": 4}, folded
    seps = [(n, m) for n, m in gm.named_modules() if isinstance(m, sft_kernels.nn.SeparableConv2d)]
    assert [n for n, _ in seps] == ["2.b.6", "3.b.6"]
    assert all(m.mid_activation == "relu6" and m.activation is None for _, m in seps)
    irs = [m for _, m in seps if isinstance(m, sft_kernels.nn.InvertedResidual)]
    assert len(irs) == ir and all(m.ex_activation == "relu6" and m.ex.activation is None for m in irs)
    residual = sorted(n.target for n in gm.graph.nodes if n.op == "call_module" and "residual" in n.kwargs)
    assert residual == ["2.b.6", "2.pw", "3.b.6", "3.pw"]  # the pw convs add a slice of d
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(gm(inp), model(x), **tol("fp32"))


def test_separable_pair_with_leaky_relu_calibrates_and_quantizes():
    """The fused pair owns its activations (the convs inside keep none), so running the convs one by one (quantize_
    calibrating through hooks, then int8) applies a leaky ReLU once, not twice."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, groups=16),
                          nn.LeakyReLU(0.2), nn.Conv2d(16, 8, 1)).eval()
    x = torch.rand(1, 3, 15, 17) - 0.5
    gm = sft_kernels.fuse_for_inference(model, x)
    sep = [m for m in gm.modules() if isinstance(m, sft_kernels.nn.SeparableConv2d)]
    assert len(sep) == 1 and sep[0].mid_activation == "leaky_relu" and sep[0].dw.activation is None
    with torch.no_grad():
        ref = model(x)
        sep[0].dw.register_forward_pre_hook(lambda m, a: None)  # a hooked conv: the unfused path
        torch.testing.assert_close(gm(x), ref, **tol("fp32"))


def test_separable_conv_bound_kernel_follows_every_change():
    """A fused SeparableConv2d keeps its kernel's call bound for the last input signature (as converted convs do):
    repeated calls, in-place weight updates, a residual on and off, another input size, a new activation and a
    channels_last → NCHW switch all give the two convs' result."""
    from sft_kernels.nn import SeparableConv2d

    torch.manual_seed(0)
    m = SeparableConv2d.from_convs(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.Conv2d(16, 24, 1), "relu", None)
    m.eval()
    x = torch.rand(1, 16, 9, 11).contiguous(memory_format=torch.channels_last)
    res = torch.randn(1, 24, 9, 11)

    def expected(x, residual=None):
        y = F.conv2d(F.relu(F.conv2d(x.double(), m.dw.weight.double(), m.dw.bias.double(), 1, 1, 1, 16)),
                     m.pw.weight.double(), m.pw.bias.double())
        y = F.leaky_relu(y, 0.01) if m.activation == "leaky_relu" else y
        return y if residual is None else y + residual.double()

    def check(y, e):
        assert_close(y, e, 16 * 9)

    with torch.no_grad():
        for _ in range(12):  # past the autotuner's second look
            check(m(x), expected(x))
        assert m.__dict__.get("_fast") is not None
        m.pw.weight.mul_(-1)
        check(m(x), expected(x))
        check(m(x, res), expected(x, res))
        check(m(x), expected(x))
        x2 = torch.rand(2, 16, 5, 7).contiguous(memory_format=torch.channels_last)
        check(m(x2), expected(x2))
        m.activation = "leaky_relu"
        check(m(x), expected(x))
        check(m(x.contiguous()), expected(x))


class SiluBlock(nn.Module):
    """EfficientNet / YOLO-style: conv → batch norm → SiLU (module and function), MobileNetV3's hardswish, a
    depthwise conv between."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU()
        self.dw, self.b2 = nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=False), nn.BatchNorm2d(16)
        self.c3, self.a3 = nn.Conv2d(16, 24, 1), nn.Hardswish()
        self.c4 = nn.Conv2d(24, 24, 3, padding=1)

    def forward(self, x):
        y = self.a1(self.b1(self.c1(x)))
        y = F.silu(self.b2(self.dw(y)))
        y = self.a3(self.c3(y))
        return F.hardswish(self.c4(y)) + y


def test_silu_and_hardswish_fold_into_the_convs():
    """Module and functional SiLU / hardswish after a conv (and its batch norm) become the conv's epilogue in
    convert_ (modules) and fuse_for_inference (functions too), int8 included; outputs match eager, NCHW in."""
    torch.manual_seed(0)
    model = _bn_statistics(SiluBlock().eval())
    x = torch.randn(2, 3, 20, 18)
    with torch.no_grad():
        ref = model(x)
    mc = copy.deepcopy(model)
    sft_kernels.convert_(mc)
    assert mc.c1.__dict__["_sft_act"] == ("silu", 0.01) and mc.c3.__dict__["_sft_act"] == ("hardswish", 0.01)
    gm = sft_kernels.fuse_for_inference(model, x)
    acts = {n: (getattr(m, "mid_activation", None), m.activation) for n, m in gm.named_modules()
            if isinstance(m, (Conv2d, sft_kernels.nn.SeparableConv2d)) and "." not in n}
    # the depthwise conv, its SiLU, the 1×1 conv and its hardswish: one separable conv
    assert acts == {"c1": (None, "silu"), "c3": ("silu", "hardswish"), "c4": (None, "hardswish")}, acts
    assert not any(n.op == "call_function" and n.target in (F.silu, F.hardswish) for n in gm.graph.nodes)
    with torch.no_grad():
        for m in (mc, gm):
            torch.testing.assert_close(m(x), ref, **tol("fp32"))
    q = sft_kernels.fuse_for_inference(model, x)
    sft_kernels.quantize_(q, calibration=[torch.randn(2, 3, 20, 18) for _ in range(3)], progress=False)
    qacts = {n: m.activation for n, m in q.named_modules() if isinstance(m, sft_kernels.nn.QuantConv2d)}
    assert qacts == {"c1": "silu", "c3.dw": None, "c3.pw": None, "c4": "hardswish"}, qacts
    assert (q.c3.mid_activation, q.c3.activation) == ("silu", "hardswish")  # passed to its int8 convs' stores
    with torch.no_grad():
        y = q(x)
    sqnr = 10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum())
    assert sqnr > 25, sqnr.item()


class _ScaledResidual(nn.Module):
    """EDSR's residual scaling (``body(x).mul(0.1) + x``), ESRGAN's ``0.2 * y + x``, and a conv whose weight is
    tied to another conv's (scaling must not reach the other one)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.c2, self.tied = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.tied.weight = self.c2.weight

    def forward(self, x):
        f = self.head(x)
        f = self.body(f).mul(0.1) + f
        f = 0.2 * self.c2(f) + f
        return self.tied(f)


def test_scaled_residuals_fold_into_the_conv_weights():
    torch.manual_seed(0)
    model = _ScaledResidual().eval()
    x = torch.randn(1, 3, 14, 18)
    gm = sft_kernels.fuse_for_inference(model, x)
    _, folded = gm.fusion_report
    assert folded["scale"] == 2 and folded["residual"] == 2, folded
    assert not any(n.op in ("call_function", "call_method") and "mul" in str(n.target) for n in gm.graph.nodes)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-4, atol=1e-5)
    assert torch.equal(gm.get_submodule("tied").weight, model.tied.weight)  # the tied conv kept its weight
