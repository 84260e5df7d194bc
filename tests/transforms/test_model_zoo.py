"""Every transform on a small zoo of CNNs the rest of the tests do not build, fed the inputs users pass (NCHW,
channels_last, a sliced view; odd sizes, batches): outputs against eager. Each case here once failed (a 1×7 RGB
conv in int8, channel pruning of a model without hand-written groups, a converted model under autocast, convert_'s
fused pairs under quantize_)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels as sk


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, t=4):
        super().__init__()
        h = cin * t
        self.residual = stride == 1 and cin == cout
        self.b = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                               nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                               nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.b(x) if self.residual else self.b(x)


def mobilenet():
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), InvRes(16, 16, 1), InvRes(16, 24, 2),
                         InvRes(24, 24, 1), nn.Conv2d(24, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


class EDSRish(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True),
                                                nn.Conv2d(c, c, 3, padding=1)) for _ in range(2))
        self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x):
        h = self.head(x)
        r = h
        for b in self.body:
            r = r + 0.1 * b(r)
        return self.up(r + h)


class OddConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, (1, 7), stride=(2, 1), padding=(0, 3), bias=False)
        self.b = nn.Conv2d(12, 24, 3, padding=2, dilation=2, groups=3)
        self.c = nn.Conv2d(24, 48, 3, padding="same", groups=24)  # depthwise, multiplier 2
        self.d = nn.Conv2d(48, 16, 1)
        self.e = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.f = nn.Conv2d(16, 8, 5, stride=3, padding=1)

    def forward(self, x):
        x = F.leaky_relu(self.a(x), 0.2)
        x = self.d(torch.relu(self.c(torch.relu(self.b(x)))))
        return self.f(F.gelu(self.e(x)))


ZOO = {"mobilenet": mobilenet, "edsr": EDSRish, "odd": OddConvs}


def _model(name):
    torch.manual_seed(1)
    m = ZOO[name]().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def _inputs():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 21, 26, generator=g)
    return [x, x.contiguous(memory_format=torch.channels_last),
            torch.rand(1, 3, 34, 17, generator=g)[:, :, ::2]]  # a sliced view, odd width


def _rel(y, ref):
    return ((y - ref).abs().max() / ref.abs().max()).item()


def _sqnr(y, ref):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((y - ref) ** 2).sum()), 1e-30))


@pytest.mark.parametrize("name", list(ZOO))
def test_float_transforms_match_eager(name):
    model = _model(name)
    converted = copy.deepcopy(model)
    sk.convert_(converted)
    fused = sk.fuse_for_inference(model, _inputs()[0])
    with torch.no_grad():
        for x in _inputs():
            ref = model(x)
            for variant in (converted, fused):
                y = variant(x)
                assert y.shape == ref.shape and _rel(y, ref) < 1e-4
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert _rel(converted(x).float(), ref) < 5e-2


@pytest.mark.parametrize("name", list(ZOO))
def test_quantize_and_chain_stay_close(name):
    model = _model(name)
    calib = [torch.rand(2, 3, 24, 24) for _ in range(3)]
    plain, converted = copy.deepcopy(model), copy.deepcopy(model)
    sk.convert_(converted)
    fused = sk.fuse_for_inference(model, _inputs()[0])
    for variant in (plain, converted, fused):
        sk.quantize_(variant, calibration=calib, progress=False)
    if name == "mobilenet":  # the last block's fused separable conv hands the 24→32 conv uint8 from its 1×1 conv
        sep = fused.get_submodule("4.b.6")
        assert isinstance(sep, sk.nn.SeparableConv2d) and sep.pw.out_scale == fused.get_submodule("5").input_scale
    with torch.no_grad():
        for x in _inputs():
            ref = model(x)
            for variant in (plain, converted, fused):
                assert _sqnr(variant(x), ref) > 25


@pytest.mark.parametrize("name", list(ZOO))
@pytest.mark.parametrize("pattern", ["unstructured", "block", "channel"])
def test_pruned_models_convert(name, pattern):
    model = _model(name)
    sk.prune_(model, sk.PruneConfig(sparsity=0.5, pattern=pattern), example=_inputs()[0])
    converted = copy.deepcopy(model)
    sk.convert_(converted)
    with torch.no_grad():
        for x in _inputs():
            assert _rel(converted(x), model(x)) < 1e-4
