"""int8 convs padded other than by numeric zeros: padding_mode reflect / replicate / circular (the input padded
first, uint8 input included) and padding='same' / 'valid' (an even kernel's extra row and column padded with the
zero point): quantize_, QAT, checkpoints and ONNX export."""
import copy

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.nn import QuantConv2d

MODES = ["zeros", "reflect", "replicate", "circular"]


def _model(mode):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, padding_mode=mode), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, padding_mode=mode), nn.ReLU(),  # uint8 in (chained)
                         nn.Conv2d(32, 32, 4, padding="same", padding_mode=mode), nn.ReLU(),
                         nn.Conv2d(32, 16, 3, padding="same", dilation=2, padding_mode=mode),
                         nn.Conv2d(16, 8, 5, stride=2, padding=2, padding_mode=mode),
                         nn.Conv2d(8, 8, 2, padding="valid")).eval()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("mode", MODES)
def test_quantize_pads_like_the_float_conv(mode):
    model = _model(mode)
    x = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        expected = model(x)
        report = sft_kernels.quantize_(model, sft_kernels.Int8Config(winograd=True),
                                       calibration=[torch.rand(1, 3, 24, 24) for _ in range(4)])
        assert len(report.names("quantized")) == 6 and not report.names("skipped")
        assert "uint8 output for 2" in str(report)  # the reflect-padded conv 2 reads uint8
        y = model(x)
        assert torch.equal(y, model(x.contiguous(memory_format=torch.channels_last)))
    assert _rel(y, expected) < 0.03
    if mode != "zeros":  # with the padding mode dropped the borders differ far more
        wrong = copy.deepcopy(model)
        for m in wrong.modules():
            if isinstance(m, QuantConv2d) and m.pre_pad is not None and m.padding_mode != "zeros":
                m.padding_mode = "zeros"
        with torch.no_grad():
            assert _rel(wrong(x), expected) > 3 * _rel(y, expected)


def test_uint8_input_pads_with_the_zero_point():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 4, padding="same").eval()
    q = QuantConv2d.from_float(conv, input_scale=0.02, input_zero_point=37)
    assert q.padding == (1, 1) and q.pre_pad == (0, 1, 0, 1)
    x = torch.rand(1, 8, 9, 10) * 3 - 0.5
    xq = torch.clamp(torch.round(x / 0.02) + 37, 0, 255).to(torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(q(xq.contiguous(memory_format=torch.channels_last)), q(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_checkpoint_keeps_the_padding(mode):
    conv = nn.Conv2d(8, 8, 3, padding=(1, 2), padding_mode=mode).eval()
    q = QuantConv2d.from_float(conv, input_scale=0.01, input_zero_point=3)
    other = QuantConv2d(8, 8, 3, padding=(1, 2))
    other.load_state_dict(q.state_dict())
    assert (other.padding, other.pre_pad, other.padding_mode) == ((0, 0), (2, 2, 1, 1), mode)
    x = torch.rand(1, 8, 7, 9)
    with torch.no_grad():
        assert torch.equal(other(x), q(x))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_qat_trains_and_converts_a_padded_conv(mode):
    model = _model(mode)
    cal = [torch.rand(1, 3, 16, 16) for _ in range(2)]
    report = sft_kernels.prepare_qat_(model, calibration=cal)
    assert not report.names("skipped")
    model.train()
    model(torch.rand(2, 3, 16, 16)).mean().backward()
    model.eval()
    x = torch.rand(1, 3, 20, 18)
    with torch.no_grad():
        simulated = model(x)
        sft_kernels.convert_qat_(model)
        assert _rel(model(x), simulated) < 0.01


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_onnx_export_of_padded_int8_and_float_convs(mode, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _model(mode)
    x = torch.rand(1, 3, 22, 20)
    sft_kernels.export_onnx(model, x, tmp_path / "float.onnx")  # dilated 'same': explicit pads for onnxruntime
    with torch.no_grad():
        sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 16, 16)])
    sft_kernels.export_onnx(model, x, tmp_path / "int8.onnx")  # check=True: onnxruntime's result must match


def test_a_chained_models_state_dict_carries_the_handoff_grid():
    """quantize_'s uint8 handoff between convs is part of the checkpoint: a model quantized on other calibration
    data that loads this state computes what this model does."""
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)).eval()
    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        sft_kernels.quantize_(a, calibration=[torch.rand(1, 3, 16, 16)], progress=False)
        sft_kernels.quantize_(b, calibration=[torch.rand(1, 3, 16, 16) * 3], progress=False)
        assert a[0].out_scale and a[0].out_scale != b[0].out_scale
        b.load_state_dict(a.state_dict())
        x = torch.rand(1, 3, 12, 12)
        assert torch.equal(a(x), b(x))
