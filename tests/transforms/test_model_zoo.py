"""Every transform on a small zoo of CNNs the rest of the tests do not build, fed the inputs users pass (NCHW,
channels_last, a sliced view; odd sizes, batches): outputs against eager. Each case here once failed (a 1×7 RGB
conv in int8, channel pruning of a model without hand-written groups, a converted model under autocast, convert_'s
fused pairs under quantize_)."""
import copy
import math

import pytest
import torch
from torch import nn

import sft_kernels as sk

from tests.transforms.zoo import EDSRish, OddConvs, mobilenet


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
