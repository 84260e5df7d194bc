"""convert_ / revert_ on any CNN and on SFTNet: same outputs, same state_dict, modules restored."""
import copy

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.nn import Conv2d
from sft_kernels.testing import tol

from tests.conftest import op_backends

CPU_BACKENDS = op_backends("conv2d")


def _cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),  # padded by reflection first, then the conv
        nn.Conv2d(8, 8, 3, stride=2, dilation=2, padding=2, groups=4, bias=False),
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # a sub-pixel conv
        nn.Conv2d(4, 4, 3, padding="same"),  # string padding: converted, F.conv2d's semantics
        nn.Conv2d(4, 4, 4, padding="same"),  # even kernel: asymmetric 'same' padding
    )


@pytest.mark.parametrize("backend", [None] + CPU_BACKENDS)
def test_convert_any_cnn(backend):
    model = _cnn().eval()
    x = torch.randn(2, 3, 13, 11)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model(x)
    report = sft_kernels.convert_(model, backend=backend)
    assert report.converted == ["0", "2", "3", "4", "5", "6"] and not report.skipped
    assert isinstance(model[0], Conv2d) and isinstance(model[2], Conv2d)
    assert isinstance(model[4], sft_kernels.nn.ConvTranspose2d)
    assert model.state_dict().keys() == keys.keys()
    torch.testing.assert_close(model(x), expected, **tol("fp32"))
    assert sft_kernels.revert_(model) == 6
    assert type(model[0]) is nn.Conv2d and type(model[2]) is nn.Conv2d and model[2].padding_mode == "reflect"
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("backend", [None] + CPU_BACKENDS)
def test_padding_modes_match_eager(mode, backend):
    """Convs padded by reflection, replication or wrapping around: converted (the input padded first, as nn.Conv2d
    does), pruned and trained through, on NCHW and channels_last input."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(5, 16, 3, padding=1, padding_mode=mode), nn.ReLU(),
                          nn.Conv2d(16, 16, (3, 5), padding=(2, 1), dilation=(2, 1), padding_mode=mode),
                          nn.Conv2d(16, 8, 3, stride=2, padding=1, padding_mode=mode),
                          nn.Conv2d(8, 8, 4, padding="same", padding_mode=mode)).eval()
    x = torch.randn(2, 5, 11, 14)
    with torch.no_grad():
        expected = model(x)
        assert sft_kernels.convert_(model, backend=backend).converted == ["0", "2", "3", "4"]
        for xin in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(model(xin), expected, **tol("fp32"))
        sft_kernels.prune_(model, sft_kernels.PruneConfig(sparsity=0.5))
        pruned = model(x)
    eager = nn.Sequential(*[nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                      padding_mode=m.padding_mode) if isinstance(m, nn.Conv2d) else m
                            for m in model]).eval()
    eager.load_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("mask")})  # zeros kept
    torch.testing.assert_close(pruned, eager(x), **tol("fp32"))
    model.train()
    x.requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and model[0].weight.grad is not None


def test_convert_shares_parameters_and_filter():
    model = _cnn()
    w = model[0].weight
    report = sft_kernels.convert_(model, filter_fn=lambda m, name: name != "3")
    assert model[0].weight is w
    assert ("3", "excluded by filter_fn") in report.skipped


def test_convert_unavailable_backend_fails_early():
    with pytest.raises(sft_kernels.backends.BackendUnavailableError, match="cuda"):
        sft_kernels.convert_(_cnn(), backend="cuda")


def test_finetune_through_converted_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    sft_kernels.convert_(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("variant", ["pytorch", "torch"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_converted_sftnet_matches_eager(variant, backend):
    model = SFTNet(variant).reset_parameters_(seed=1).eval()
    img = torch.rand(1, 3, 6, 5) if backend == "triton" else torch.rand(1, 3, 12, 10)  # interpreter: tiny
    with torch.no_grad():
        expected = model(img)
        report = sft_kernels.convert_(model, backend=backend)
        assert len(report.converted) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
        out = model(img)
        torch.testing.assert_close(out, expected, **tol("fp32"))
        sft_kernels.revert_(model)
        assert not any(isinstance(m, Conv2d) for m in model.modules())
        torch.testing.assert_close(model(img), expected)


@pytest.mark.parametrize("backend", ["reference"] + [b for b in CPU_BACKENDS if b == "cpu"])
def test_fused_sftnet_forward_is_the_same_function(backend):
    model = SFTNet("pytorch").reset_parameters_(seed=2).eval()
    img = torch.rand(2, 3, 9, 7)
    seg = torch.softmax(torch.randn(2, 8, 36, 28), dim=1)  # a real (non-background) prior
    with torch.no_grad():
        expected = model(img, seg)
        report = sft_kernels.convert_(model, backend=backend)
        assert model.fused and report.fused == ["<model>"]
        torch.testing.assert_close(model(img, seg), expected, **tol("fp32"))
        sft_kernels.revert_(model)
        assert not model.fused
    unfused = SFTNet("pytorch")
    assert not sft_kernels.convert_(unfused, fuse=False).fused and not unfused.fused
    assert not sft_kernels.convert_(SFTNet("torch")).fused  # the "torch" variant's pre-activation blocks stay


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_converted_weights_are_checked_by_version():
    """In the default "auto" weight check a converted conv's weight is trusted by its version counter: in-place
    edits are seen, a one-value .data edit is not (the documented price) until the full check is asked for, and
    after revert_ the same tensor is checked by content again."""
    from sft_kernels.ops import conv2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1)).eval()
    sft_kernels.convert_(model, backend="cpu")
    conv, x = model[0], torch.randn(1, 16, 10, 10)
    ref = lambda: nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(), **tol("fp32"))
        conv.weight[2, 3, 1, 1] += 1.0  # in place: the counter moves
        torch.testing.assert_close(model(x), ref(), **tol("fp32"))
        stale = model(x)
        conv.weight.data[5, 7, 0, 2] += 1.0  # one value through .data: not sampled, counter unchanged
        assert torch.equal(model(x), stale)
        with sft_kernels.weight_check("full"):
            torch.testing.assert_close(model(x), ref(), **tol("fp32"))
        w = conv.weight
        sft_kernels.revert_(model)
        conv2d(x, w, padding=1, backend="cpu")
        w.data[5, 7, 0, 2] += 1.0
        torch.testing.assert_close(conv2d(x, w, padding=1, backend="cpu"),
                                   nn.functional.conv2d(x, w, padding=1), **tol("fp32"))


@pytest.mark.parametrize("backend", [None] + CPU_BACKENDS)
def test_layout_policy_nchw_in_channels_last_between_convs(backend):
    """A converted model keeps activations channels_last between its convs whatever the caller passes and hands its
    output back in the caller's layout; values equal eager's on NCHW and channels_last input, and the functional op
    still follows F.conv2d's layout rule."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()
    x = torch.randn(2, 3, 9, 7)
    with torch.no_grad():
        expected = model(x)
        sft_kernels.convert_(model, backend=backend)
        assert model[0](x).is_contiguous(memory_format=torch.channels_last)
        for inp, fmt in ((x, torch.contiguous_format), (x.contiguous(memory_format=torch.channels_last),
                                                        torch.channels_last)):
            y = model(inp)
            assert y.is_contiguous(memory_format=fmt)
            torch.testing.assert_close(y, expected, **tol("fp32"))
        from sft_kernels.ops import conv2d

        assert conv2d(x, model[0].weight, model[0].bias, padding=1, backend=backend).is_contiguous()


def test_converted_sftnet_equals_eager_on_nchw_and_channels_last():
    eager = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=1).eval()
    conv = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=1).eval()
    sft_kernels.convert_(conv)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = eager(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(conv(inp), expected, **tol("fp32"))


def _mobile_block():
    return nn.Sequential(
        nn.Conv2d(8, 16, 1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv2d(16, 12, 1),  # dw + ReLU + pw: fused
        nn.Conv2d(12, 24, 3, stride=2, padding=1, groups=12), nn.Conv2d(24, 10, 1, bias=False),  # dw (x2) + pw
        nn.Conv2d(10, 10, 3, padding=1, groups=10), nn.ReLU(), nn.Conv2d(10, 6, 3, padding=1),  # not a 1x1: left
    ).eval()


def test_convert_fuses_depthwise_then_pointwise_and_reverts():
    model = _mobile_block()
    x = torch.randn(2, 8, 13, 11)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)
        report = sft_kernels.convert_(model)
        assert [r.name for r in report.rows if r.action == "fused" and "separable" in r.detail] == ["2", "5"]
        assert [r.name for r in report.rows if r.action == "fused" and "one conv in eval" in r.detail] == ["0", "7"]
        assert type(model[2]).__name__ == "SeparableHead" and type(model[4]).__name__ == "FusedAway"
        assert type(model[9]) is Conv2d  # 3x3 after the third depthwise conv: not fused
        assert model.state_dict().keys() == keys.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in keys.items())
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(model(inp), expected, **tol("fp32"))
        assert sft_kernels.revert_(model) == 7  # the convs (ReLUs a folded conv had taken over come back too)
        assert [type(m) for m in model] == [type(m) for m in _mobile_block()]
        torch.testing.assert_close(model(x), expected, **tol("fp32"))


def test_separable_module_matches_two_convs():
    from sft_kernels.nn import SeparableConv2d

    m = SeparableConv2d(6, 9, 3, stride=2, padding=1, multiplier=2, mid_activation="relu", activation="leaky_relu")
    x = torch.randn(2, 6, 11, 10)
    with torch.no_grad():
        ref = nn.functional.leaky_relu(m.pw(torch.relu(m.dw(x))), 0.01)
        torch.testing.assert_close(m(x), ref, **tol("fp32"))
    assert set(m.state_dict()) == {"dw.weight", "dw.bias", "pw.weight", "pw.bias"}


def test_converted_models_run_under_cpu_autocast():
    """Under torch.autocast("cpu", bfloat16) converted layers run at their weights' precision: a bfloat16 input made
    upstream by autocast (the PixelShuffle after a conv that eager runs in bfloat16) is cast back, and every backend
    of an op computes in its inputs' dtype (the reference backend's F.conv2d does not switch to bfloat16)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 3, padding=1),
                          nn.PixelShuffle(2), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1,
                                                                                         groups=16),
                          nn.ReLU(), nn.Conv2d(16, 3, 1)).eval()
    x = torch.rand(1, 3, 17, 15)
    with torch.no_grad():
        want = model(x)
    sft_kernels.convert_(model)
    assert any(type(m).__name__ == "SeparableHead" for m in model.modules())  # dw + ReLU + 1x1 fused
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(x)
        w = torch.randn(8, 3, 3, 3)
        ref = sft_kernels.ops.conv2d(x, w, backend="reference")
        bf = sft_kernels.ops.conv2d(x.bfloat16(), sft_kernels.nn.Conv2d(3, 8, 3).bfloat16().weight, backend="reference")
    assert got.dtype == torch.float32 and ref.dtype == torch.float32 and bf.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, **tol("fp32"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model[2](torch.rand(1, 16, 5, 5, dtype=torch.bfloat16))  # a bfloat16 input: cast back, no dtype error
    with pytest.raises(TypeError, match="does not match input dtype"):  # outside autocast: PyTorch's rule
        model[2](torch.rand(1, 16, 5, 5, dtype=torch.bfloat16))


def test_one_pixel_maps_take_pytorchs_conv_at_the_weights_precision():
    """Squeeze-excitation convs on 1×1 maps run F.conv2d directly (a matrix-vector product); under autocast they
    still compute at the weights' precision, as every converted conv does."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(24, 6, 1), nn.ReLU(), nn.Conv2d(6, 24, 1, padding=1)).eval()
    x = torch.randn(2, 24, 1, 1)
    with torch.no_grad():
        expected = model(x)
        sft_kernels.convert_(model)
        torch.testing.assert_close(model(x), expected, **tol("exact"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(x).dtype == torch.float32


def test_a_converted_conv_runs_its_bound_kernel_and_drops_it_when_anything_changes():
    """After its first calls a converted conv keeps the kernel its input shape was dispatched to and calls it
    directly; changing the module (an activation, a new weight, a dtype) or clearing the autotuner drops it, and
    results stay the module's own."""
    from sft_kernels.runtime import autotune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)).eval()
    sft_kernels.convert_(model)
    conv = model[0]
    x = torch.randn(1, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(12):  # past the autotuner's second look
            y = conv(x)
        assert conv._fast is not None
        torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, padding=1),
                                   **tol("fp32"))
        conv.activation = "relu"
        assert conv._fast is None and conv(x).min() >= 0
        conv.weight = nn.Parameter(-conv.weight)
        torch.testing.assert_close(conv(x), torch.relu(nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)),
                                   **tol("fp32"))
        for _ in range(12):
            conv(x)
        autotune.clear()
        conv(x)
        assert autotune.choices()  # dispatched (and measured) again, not the kept kernel
        model.double()
        assert conv._fast is None and conv(x.double()).dtype == torch.float64


def test_models_that_ran_pickle_and_deepcopy_without_their_bound_calls(tmp_path):
    """A converted, quantized or fused-separable model that has run holds bound kernel calls (closures over its own
    tensors): torch.save of the whole module must still work, and a deepcopy must run on its own weights."""
    from sft_kernels.nn import SeparableConv2d

    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)).eval()
    sft_kernels.convert_(conv)
    quant = copy.deepcopy(conv)
    sft_kernels.quantize_(quant, calibration=[x], progress=False)
    sep = nn.Sequential(nn.Conv2d(3, 8, 1), SeparableConv2d(8, 8, 3, padding=1, mid_activation="relu")).eval()
    sft_kernels.convert_(sep)
    for model in (conv, quant, sep):
        with torch.no_grad():
            for _ in range(12):  # past the autotuner's second look: the calls are bound
                y = model(x)
            assert any(m.__dict__.get("_fast") for m in model.modules())
            torch.save(model, tmp_path / "m.pt")
            assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=False)(x), y)
            twin = copy.deepcopy(model)
            assert not any(m.__dict__.get("_fast") for m in twin.modules())
            for p in twin.parameters():
                p.neg_()
            for b in twin.buffers():
                if b.dtype == torch.int8:
                    b.neg_()
            assert not torch.equal(twin(x), y) and torch.equal(model(x), y)
