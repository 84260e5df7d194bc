"""fuse_for_inference: conv → batch norm → activation chains and residual adds folded into converted convs."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.nn import Conv2d
from sft_kernels.testing import tol

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
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):  # statistics that make folding matter
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
    assert folded == {"batch_norm": 4, "activation": 3, "residual": 1}
    assert len(report.converted) == 8
    assert [type(m) for m in gm.modules() if isinstance(m, nn.BatchNorm2d)] == [nn.BatchNorm2d]  # bn3 stays
    acts = {name: m.activation for name, m in gm.named_modules() if isinstance(m, Conv2d)}
    assert acts == {"0": "relu", "3.conv1": "relu", "3.conv2": None, "3.down.0": None, "3.conv3": None,
                    "3.conv4": None, "3.conv5": None, "4": "leaky_relu"}
    residual = [n.target for n in gm.graph.nodes if n.op == "call_module" and "residual" in n.kwargs]
    assert residual in (["3.conv2"], ["3.down.0"])
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), **tol("fp32"))
    assert isinstance(model[1], nn.BatchNorm2d)  # the original is untouched


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
    assert gm.fusion_report[1] == {"batch_norm": 0, "activation": 0, "residual": 0}
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))
