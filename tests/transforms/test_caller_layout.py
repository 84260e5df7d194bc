"""A transformed model hands its output back in the caller's layout: code after the last conv that flattens with
.view (VGG-style heads) runs on NCHW input as it does in eager PyTorch."""
import copy
import io

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.transforms import caller_layout


class ViewHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


def _qat(m, x):
    sft_kernels.prepare_qat_(m, calibration=[x])
    m.train()
    m(x).sum().backward()  # trains through the fake-quantized convs and Linear
    m.eval()
    sft_kernels.convert_qat_(m)


TRANSFORMS = {
    "convert": lambda m, x: sft_kernels.convert_(m),
    "convert filtered": lambda m, x: sft_kernels.convert_(m, filter_fn=lambda mod, name: True),
    "quantize": lambda m, x: sft_kernels.quantize_(m, calibration=[x]),
    "convert then quantize": lambda m, x: (sft_kernels.convert_(m), sft_kernels.quantize_(m, calibration=[x])),
    "prune": lambda m, x: sft_kernels.prune_(m, sft_kernels.PruneConfig(sparsity=0.5)),
    "qat": _qat,
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_view_after_the_last_conv_runs(name):
    torch.manual_seed(0)
    model = ViewHead().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    TRANSFORMS[name](model, x)
    with torch.no_grad():
        got = model(x)
    if name != "prune":  # (pruning changes the function)
        assert (got - expected).abs().max() < 0.1 * expected.abs().max()
    caller_layout.remove(model)  # without the hooks the flattening fails: the test can fail
    with pytest.raises(RuntimeError, match="view size is not compatible"), torch.no_grad():
        model(x)


def test_fuse_for_inference_with_a_view_head():
    model = ViewHead().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(sft_kernels.fuse_for_inference(copy.deepcopy(model), x)(x), model(x),
                                   atol=1e-4, rtol=1e-4)


def test_output_layout_follows_the_input_and_hooks_travel():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 12, 3, padding=1),
                          nn.PixelShuffle(2)).eval()
    sft_kernels.convert_(model)
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        assert model[2](model[1](model[0](x))).is_contiguous(memory_format=torch.channels_last)  # inside: cl
        assert model(x).is_contiguous()
        assert model(x.contiguous(memory_format=torch.channels_last)).is_contiguous(memory_format=torch.channels_last)
        for other in (copy.deepcopy(model), _reloaded(model), torch.compile(model, fullgraph=True)):
            assert other(x).is_contiguous()
    sft_kernels.revert_(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _reloaded(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_a_fused_forward_hands_back_nchw_too():
    from sft_kernels.models import SFTNet

    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=1).eval()
    sft_kernels.convert_(model)  # SFTNet's fused forward calls the ops, not the converted modules
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert model(x).is_contiguous()
        assert model(x.contiguous(memory_format=torch.channels_last)).is_contiguous(memory_format=torch.channels_last)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5), nn.Linear(16 * 20 * 20, 10)

    def forward(self, x):
        f = self.c2(torch.relu(self.c1(x)))
        return self.fc(f.view(f.size(0), -1))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x=None, scale=1.0):
        f = self.a(x)
        return {"features": f, "out": (f * scale, self.b(f))}


def test_one_channel_input_keyword_input_and_several_outputs():
    """A grayscale map is contiguous in both layouts: NCHW, as eager takes it; the map may come by keyword; every
    4-D map in a tuple or dict output comes back NCHW."""
    model = LeNet().eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        sft_kernels.convert_(model)
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)
        two = TwoOutputs().eval()
        sft_kernels.convert_(two)
        out = two(x=torch.rand(1, 3, 6, 5), scale=torch.tensor(2.0))
        assert out["features"].is_contiguous() and all(t.is_contiguous() for t in out["out"])
        assert two(torch.rand(1, 3, 6, 5).transpose(2, 3))["features"].is_contiguous()  # a strided NCHW view


class ResidualBlock(nn.Module):
    """Two branches of convs joined by an add: no .view, so only the model's output goes back to NCHW (an NCHW map
    from one branch's last conv had made the add mix layouts and cost a copy back)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 1))
        self.shortcut = nn.Conv2d(32, 64, 1)

    def forward(self, x):
        h = self.stem(x)
        return torch.relu(self.branch(h) + self.shortcut(h))


def _hooked(model):
    return {name for name, m in model.named_modules()
            if any(isinstance(h, caller_layout.BackToCaller) for h in m._forward_hooks.values())}


def test_only_layers_whose_maps_reach_a_view_hand_back_nchw():
    torch.manual_seed(0)
    res, head = ResidualBlock().eval(), ViewHead().eval()
    sft_kernels.convert_(res)
    sft_kernels.convert_(head)
    assert _hooked(res) == {""}
    assert _hooked(head) == {"", "features.4"}
    seen = {}
    res.shortcut.register_forward_hook(lambda m, i, o: seen.setdefault("shortcut", o.is_contiguous()))
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        y = res(x)
    assert y.is_contiguous() and not seen["shortcut"]
    assert res(x.contiguous(memory_format=torch.channels_last)).is_contiguous(memory_format=torch.channels_last)
