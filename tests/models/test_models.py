"""SFTNet: public key names, parameter counts, MACs, layer formulas, input checks."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sft_kernels.metrics import conv_macs, count_params
from sft_kernels.models import CondNet, ResBlockSFT, SFTLayer, SFTNet, background_seg
from sft_kernels.testing import tol

PUBLIC_KEYS = [
    "conv0.weight",
    "sft_branch.0.sft0.SFT_scale_conv0.weight",
    "sft_branch.15.conv1.bias",
    "sft_branch.16.SFT_shift_conv1.weight",
    "sft_branch.17.weight",
    "HR_branch.0.weight",
    "HR_branch.8.bias",
    "CondNet.8.weight",
]


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {v: SFTNet(v).eval() for v in ("pytorch", "torch")}


@pytest.mark.parametrize("variant,expected", [("pytorch", 1_833_763), ("torch", 1_612_195)])
def test_param_count(nets, variant, expected):
    assert count_params(nets[variant]) == expected


def test_public_keys(nets):
    keys = set(nets["pytorch"].state_dict())
    for k in PUBLIC_KEYS:
        assert k in keys, k
    assert {f"CondNet.{i}.weight" for i in (0, 2, 4, 6, 8)} <= keys
    assert {f"HR_branch.{i}.weight" for i in (0, 3, 6, 8)} <= keys
    torch_keys = set(nets["torch"].state_dict())
    assert {f"HR_branch.{i}.weight" for i in (1, 4, 6, 8)} <= torch_keys
    assert all(k in torch_keys for k in PUBLIC_KEYS if not k.startswith("HR_branch.0"))
    # Every weight lives in a plain nn.Conv2d (what a module-swapping converter replaces).
    for m in nets["pytorch"].modules():
        if list(m.parameters(recurse=False)):
            assert type(m) is nn.Conv2d


def test_load_public_state_dict(nets):
    """A checkpoint with the public names (here: another instance's) loads strictly and gives the same output."""
    src, dst = nets["pytorch"], SFTNet("pytorch").eval()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    dst.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), **tol("exact"))


@pytest.mark.parametrize("variant", ["pytorch", "torch"])
def test_macs_128(variant):
    # MACs depend only on shapes: count them on the meta device (no compute, fast).
    with torch.device("meta"):
        net = SFTNet(variant)
        x = torch.empty(1, 3, 128, 128)
    macs = conv_macs(net, x)
    # Both variants give 46,618,640,384: a 64->256 conv at HxW costs the same as a 64->64 conv at 2Hx2W.
    assert macs == 46_618_640_384
    assert round(macs / 1e9, 2) == 46.62


def test_macs_real_matches_meta(nets):
    """On real tensors the count is the same, and it scales with the number of pixels."""
    macs = conv_macs(nets["pytorch"], torch.rand(1, 3, 32, 32))
    assert macs * 16 == 46_618_640_384


def _sft_ref(layer, x, cond, variant):
    slope, plus = (0.1, 1.0) if variant == "pytorch" else (0.01, 0.0)
    scale = F.conv2d(F.leaky_relu(F.conv2d(cond, layer.SFT_scale_conv0.weight, layer.SFT_scale_conv0.bias), slope),
                     layer.SFT_scale_conv1.weight, layer.SFT_scale_conv1.bias)
    shift = F.conv2d(F.leaky_relu(F.conv2d(cond, layer.SFT_shift_conv0.weight, layer.SFT_shift_conv0.bias), slope),
                     layer.SFT_shift_conv1.weight, layer.SFT_shift_conv1.bias)
    return x * (scale + plus) + shift


@pytest.mark.parametrize("variant", ["pytorch", "torch"])
def test_sft_and_resblock_formulas(variant):
    torch.manual_seed(1)
    x, cond = torch.randn(2, 64, 5, 7), torch.randn(2, 32, 5, 7)
    sft = SFTLayer(variant)
    with torch.no_grad():
        torch.testing.assert_close(sft((x, cond)), _sft_ref(sft, x, cond, variant))
        blk = ResBlockSFT(variant)
        out, c = blk((x, cond))
        assert c is cond
        s0 = lambda t: _sft_ref(blk.sft0, t, cond, variant)  # noqa: E731
        s1 = lambda t: _sft_ref(blk.sft1, t, cond, variant)  # noqa: E731
        if variant == "pytorch":
            ref = x + blk.conv1(s1(F.relu(blk.conv0(s0(x)))))
        else:
            ref = x + blk.conv1(F.relu(s1(blk.conv0(F.relu(s0(x))))))
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("variant", ["pytorch", "torch"])
def test_forward_matches_public_structure(nets, variant):
    """forward == the public code path: fea = conv0(img); fea + sft_branch((fea, cond)); HR_branch."""
    net = nets[variant]
    torch.manual_seed(2)
    img = torch.rand(2, 3, 5, 6)
    seg = torch.softmax(torch.randn(2, 8, 20, 24), 1)
    with torch.no_grad():
        out = net(img, seg)
        fea = net.conv0(img)
        ref = net.HR_branch(fea + net.sft_branch((fea, net.CondNet(seg))))
    assert out.shape == (2, 3, 20, 24)
    torch.testing.assert_close(out, ref, **tol("exact"))


def test_background_prior(nets):
    img = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    seg = background_seg(img)
    assert seg.shape == (1, 8, 16, 20) and seg.dtype == torch.float64
    assert torch.all(seg[:, 0] == 1) and torch.all(seg[:, 1:] == 0)
    net = nets["pytorch"]
    img = img.float()
    with torch.no_grad():
        torch.testing.assert_close(net(img), net(img, background_seg(img)), **tol("exact"))
    with pytest.raises(ValueError, match="scale must be a positive int"):
        background_seg(img, 0)  # it had returned an empty map


def test_condnet_shape():
    cn = CondNet()
    assert isinstance(cn, nn.Sequential)
    assert [i for i, m in enumerate(cn) if isinstance(m, nn.Conv2d)] == [0, 2, 4, 6, 8]
    assert cn(torch.rand(1, 8, 12, 16)).shape == (1, 32, 3, 4)


def test_bad_inputs(nets):
    net = nets["pytorch"]
    img = torch.rand(1, 3, 16, 16)
    expected = r"seg must be 4x the image size: expected \(N, 8, 4H, 4W\) = \(1, 8, 64, 64\)"
    with pytest.raises(ValueError, match=expected):
        net(img, torch.rand(1, 8, 32, 32))
    with pytest.raises(ValueError, match="img"):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="img"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="img"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="img"):
        net("image")
    with pytest.raises(ValueError, match="seg"):
        net(img, torch.rand(1, 7, 64, 64))
    with pytest.raises(ValueError, match="batch"):
        net(img, torch.rand(2, 8, 64, 64))
    with pytest.raises(ValueError, match="device"):
        net(img, torch.empty(1, 8, 64, 64, device="meta"))
    with pytest.raises(ValueError, match="variant"):
        SFTNet("lua")


def test_deterministic_reset():
    a = SFTNet().reset_parameters_(seed=3)
    b = SFTNet().reset_parameters_(seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
