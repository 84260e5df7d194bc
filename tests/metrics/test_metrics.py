"""Complexity (params, bytes, MACs) and quality (PSNR, SSIM) metrics."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from sft_kernels.metrics import (conv_macs, count_params, layer_macs, model_size_bytes, psnr,
                                 rgb_to_y, ssim)
from sft_kernels.testing import tol


# ---------------------------------------------------------------- complexity
class MyConv(nn.Conv2d):
    """A subclass, as a converter would install: must still be counted."""


@pytest.mark.parametrize("layer,x_shape,expected", [
    # 3x3, 8->16, stride 1, pad 1 on 7x9: out 2*16*7*9 elements, each 8*3*3 MACs
    (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 7, 9), 2 * 16 * 7 * 9 * 8 * 9),
    # strided: 5x5 s2 p2 on 13x13 -> 7x7
    (nn.Conv2d(4, 6, 5, stride=2, padding=2), (1, 4, 13, 13), 6 * 7 * 7 * 4 * 25),
    # grouped: groups=4, C_in/groups = 2; 3x3 no pad on 7x7 -> 5x5
    (nn.Conv2d(8, 12, 3, groups=4), (1, 8, 7, 7), 12 * 5 * 5 * 2 * 9),
    # depthwise + dilation 2: 3x3 d2 p2 keeps 11x11, one input channel per output
    (nn.Conv2d(5, 5, 3, padding=2, dilation=2, groups=5), (3, 5, 11, 11), 3 * 5 * 11 * 11 * 9),
    # 1x1
    (nn.Conv2d(32, 64, 1), (1, 32, 6, 6), 64 * 36 * 32),
    # non-square kernel, subclass of nn.Conv2d
    (MyConv(3, 4, (1, 3), padding=(0, 1)), (1, 3, 5, 5), 4 * 25 * 3 * 3),
    # transposed: in_elems * C_out/groups * kh * kw
    (nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1), (1, 6, 5, 5), 6 * 25 * 4 * 16),
    (nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2), (2, 6, 5, 5), 2 * 6 * 25 * 2 * 9),
    # linear: out_elems * in_features
    (nn.Linear(10, 7), (3, 10), 3 * 7 * 10),
    (nn.Linear(10, 7, bias=False), (2, 4, 10), 2 * 4 * 7 * 10),
])
def test_layer_macs_by_hand(layer, x_shape, expected):
    assert conv_macs(layer, torch.randn(x_shape)) == expected


def test_pruned_conv_counts_its_kept_weights():
    from sft_kernels.nn import SparseConv2d

    mask = torch.zeros(16, 8, 3, 3, dtype=torch.bool)
    mask[:, :, 1, 1] = True  # 1 of 9 taps kept
    conv = SparseConv2d.from_conv(nn.Conv2d(8, 16, 3, padding=1), mask).eval()
    assert conv_macs(conv, torch.randn(2, 8, 7, 9)) == 2 * 16 * 7 * 9 * 8


def test_macs_of_a_fused_model_match_the_plain_one():
    import sft_kernels
    from sft_kernels.models import SFTNet

    plain = SFTNet(num_blocks=1, channels=8).eval()
    fused = SFTNet(num_blocks=1, channels=8).eval()
    sft_kernels.convert_(fused)
    x = torch.rand(1, 3, 8, 8)
    assert fused.fused and conv_macs(fused, x) == conv_macs(plain, x) > 0


def test_int8_layers_count_like_the_float_ones():
    """QuantConv2d / QuantLinear (plain modules holding int8 buffers) count the MACs and parameters of the layers they
    replace (an int8 model had reported 0 of both)."""
    import sft_kernels

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, stride=2, padding=1),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).eval()
    x = torch.rand(2, 3, 8, 8)
    macs, params = conv_macs(model, x), count_params(model)
    sft_kernels.quantize_(model, calibration=[x], progress=False)
    assert type(model[0]).__name__ == "QuantConv2d" and type(model[4]).__name__ == "QuantLinear"
    assert conv_macs(model, x) == macs and count_params(model) == params


def test_measuring_leaves_a_training_model_as_it_was():
    """conv_macs and layer_times run the model in eval mode and restore its mode: batch-norm statistics do not move
    (they had been updated by every measurement of a model in train mode)."""
    from sft_kernels.metrics import layer_times

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    before = copy.deepcopy(model.state_dict())
    conv_macs(model, torch.rand(2, 3, 8, 8))
    layer_times(model, torch.rand(2, 3, 8, 8), repeat=1)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_layer_macs_list_and_kwargs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1))
            self.fc = nn.Linear(4, 2)

        def forward(self, x, twice=False):
            y = self.body(self.a(x))
            if twice:
                y = self.body(y)
            return self.fc(y.mean((2, 3)))

    net = Net()
    x = torch.rand(1, 3, 4, 4)
    rows = layer_macs(net, x, twice=True)
    assert [(r.name, r.type) for r in rows] == [("a", "Conv2d"), ("body.1", "Conv2d"),
                                                ("body.1", "Conv2d"), ("fc", "Linear")]
    assert [r.macs for r in rows] == [16 * 4 * 27, 16 * 4 * 4, 16 * 4 * 4, 8]
    assert conv_macs(net, x, twice=True) == sum(r.macs for r in rows)
    assert conv_macs(net, x) == 16 * 4 * 27 + 16 * 4 * 4 + 8
    # hooks are removed afterwards
    assert all(not m._forward_hooks for m in net.modules())


def test_params_and_bytes():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))
    n = 4 * 3 * 9 + 4 + 4 + 4 + 2 * 2 + 2
    assert count_params(net) == n
    # buffers: running_mean (4 f32), running_var (4 f32), num_batches_tracked (1 int64)
    assert model_size_bytes(net) == 4 * n + 4 * 8 + 8
    net.half()
    assert model_size_bytes(net) == 2 * n + 2 * 8 + 8
    # shared parameters count once
    shared = nn.Linear(3, 3)
    seq = nn.Sequential(shared, shared)
    assert count_params(seq) == 12 and model_size_bytes(seq) == 48


# ---------------------------------------------------------------- quality
@pytest.fixture(scope="module")
def astronaut_pair():
    skdata = pytest.importorskip("skimage.data")
    from skimage.filters import gaussian
    img = skdata.astronaut()[:192, 160:352].astype(np.float64) / 255.0  # crop keeps the test fast
    rng = np.random.default_rng(0)
    deg = gaussian(img, sigma=1.0, channel_axis=-1) + rng.normal(0, 0.02, img.shape)
    return img, np.clip(deg, 0, 1)


def _y_numpy(img):
    return (16 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def test_ssim_matches_skimage(astronaut_pair):
    from skimage.metrics import structural_similarity
    a, b = astronaut_pair
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    ref_y = structural_similarity(_y_numpy(a), _y_numpy(b), **kw)
    assert abs(ssim(a, b) - ref_y) < 1e-4
    # tensors (C,H,W) and (N,C,H,W) give the same value
    ta, tb = torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)
    assert abs(ssim(ta, tb) - ref_y) < 1e-4
    assert abs(ssim(ta[None].float(), tb[None].float()) - ref_y) < 1e-4
    # RGB: channels averaged, as skimage does with channel_axis
    ref_rgb = structural_similarity(a, b, channel_axis=-1, **kw)
    assert abs(ssim(a, b, y_channel=False) - ref_rgb) < 1e-4
    # crop_border and 8-bit data range
    ref_crop = structural_similarity(_y_numpy(a)[4:-4, 4:-4], _y_numpy(b)[4:-4, 4:-4], **kw)
    assert abs(ssim(a, b, crop_border=4) - ref_crop) < 1e-4
    assert abs(ssim(a * 255, b * 255, data_range=255.0) - ref_y) < 1e-4
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr(astronaut_pair):
    from skimage.metrics import peak_signal_noise_ratio
    a, b = astronaut_pair
    ref = peak_signal_noise_ratio(_y_numpy(a), _y_numpy(b), data_range=1.0)
    assert psnr(a, b) == pytest.approx(ref, abs=1e-6)
    ref_rgb = peak_signal_noise_ratio(a[3:-3, 3:-3], b[3:-3, 3:-3], data_range=1.0)
    assert psnr(a, b, crop_border=3, y_channel=False) == pytest.approx(ref_rgb, abs=1e-6)
    assert psnr(a * 255, b * 255, data_range=255.0) == pytest.approx(ref, abs=1e-6)
    assert psnr(a, a) == math.inf
    x = torch.rand(2, 3, 8, 8)
    assert psnr(x, x.clone()) == math.inf
    # a known MSE: constant offset 0.1 on the Y channel input -> PSNR = 20 dB
    y = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 0.5
    assert psnr(y, y + 0.1) == pytest.approx(20.0, abs=1e-9)
    # batch: mean of per-image values
    p = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    q = p + torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    assert psnr(p, q) == pytest.approx((20.0 + 40.0) / 2, abs=1e-9)


def test_rgb_to_y():
    x = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1)
    y = rgb_to_y(x).flatten()
    torch.testing.assert_close(y, torch.tensor([16 / 255, 235 / 255]), **tol("fp32_pointwise"))


def test_uint8_images_and_integer_luma():
    """uint8 images are measured on the 0-255 scale unless told otherwise (data_range=1.0 had given -9.8 dB for a
    38 dB pair), and rgb_to_y of an integer tensor uses the exact BT.601 weights (they had been truncated)."""
    g = np.random.default_rng(0)
    a = (g.random((32, 32, 3)) * 255).astype(np.uint8)
    b = np.clip(a.astype(np.int16) + g.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(psnr(a / 255.0, b / 255.0), abs=1e-9)
    assert ssim(a, b) == pytest.approx(ssim(a / 255.0, b / 255.0), abs=1e-9)
    assert psnr(a, b, crop_border=np.int64(2)) == psnr(a, b, crop_border=2)
    y = rgb_to_y(torch.tensor([200, 100, 50], dtype=torch.uint8).view(1, 3, 1, 1), 255)
    assert float(y) == pytest.approx(16 + (65.481 * 200 + 128.553 * 100 + 24.966 * 50) / 255, abs=1e-9)


def test_bad_quality_inputs():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=8)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=-1)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, a, crop_border=True)
    with pytest.raises(ValueError, match="channels"):
        psnr(torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12), crop_border=1)
    with pytest.raises(TypeError):
        psnr([1.0], [1.0])
