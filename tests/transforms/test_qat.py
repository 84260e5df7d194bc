"""prepare_qat_ / convert_qat_: fake quantization with straight-through gradients, ranges calibrated once, and the
int8 model it converts to computing what the QAT model simulated."""
import math

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.nn import QuantConv2d
from sft_kernels.transforms.qat import QATConv2d
from tests.transforms.test_quantize import CARNLike


def _sqnr(y, ref):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((y - ref) ** 2).sum()), 1e-20))


def test_qat_trains_and_converts_to_what_it_simulated():
    torch.manual_seed(0)
    model = SFTNet(num_blocks=1, channels=16).reset_parameters_(seed=0)
    calib = [torch.rand(2, 3, 16, 16) for _ in range(2)]
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = model.eval()(x)
    report = sft_kernels.prepare_qat_(model, calibration=calib)
    n = len(report.names("fake-quantized"))
    assert n == sum(isinstance(m, QATConv2d) for m in model.modules()) > 0
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = ref.detach() * 0.8 + 0.1  # something to learn
    losses = []
    for _ in range(8):  # gradients reach the float weights through the rounding
        loss = (model(x) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        assert model.conv0.conv.weight.grad is not None and model.conv0.conv.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        simulated = model(x)
    sft_kernels.convert_qat_(model)
    assert sum(isinstance(m, QuantConv2d) for m in model.modules()) == n
    assert not any(isinstance(m, QATConv2d) for m in model.modules())
    with torch.no_grad():
        int8 = model(x)
    assert _sqnr(int8, simulated) > 40, _sqnr(int8, simulated)  # the same grid; only float rounding differs


def test_qat_leaves_ineligible_convs_float():
    model = CARNLike().eval()
    report = sft_kernels.prepare_qat_(model, sft_kernels.Int8Config(keep_float=("f1",)),
                                      calibration=[torch.rand(1, 3, 8, 8)])
    assert isinstance(model.f1, nn.Conv2d) and "f1" in report.names("skipped")
    sft_kernels.convert_qat_(model)
    assert isinstance(model.entry, QuantConv2d) and isinstance(model.f1, nn.Conv2d)
    assert isinstance(model.b1, QuantConv2d) and model.b1.groups == 4  # grouped convs train and run int8


def test_train_cli_qat_writes_an_int8_model(tmp_path, capsys):
    from sft_kernels.models.pretrained import resolve_model
    from sft_kernels.tools import cli

    out = tmp_path / "qat"
    argv = ["train", "--out", str(out), "--steps", "2", "--batch", "2", "--patch", "12", "--num-blocks", "1",
            "--channels", "8", "--eval-every", "0", "--qat"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "QAT:" in printed and "QAT int8 model: china" in printed
    q = resolve_model(str(out / "int8.safetensors"))
    assert sum(isinstance(m, QuantConv2d) for m in q.modules()) > 0
    with torch.no_grad():
        assert torch.isfinite(q(torch.rand(1, 3, 10, 10))).all()


def test_a_qat_checkpoint_read_as_a_float_model_says_where_the_int8_model_is(tmp_path):
    """The state_dict of a model under prepare_qat_ (what `train --qat` keeps in last.pt) is refused by the float
    loader with a pointer to the int8 file the run writes (it had said 'no conv0.weight')."""
    from safetensors.torch import save_file

    from sft_kernels.models.checkpoint import WeightsError

    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=0).eval()
    sft_kernels.prepare_qat_(model, calibration=[torch.rand(1, 3, 8, 8)])
    path = tmp_path / "last.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}, str(path))
    with pytest.raises(WeightsError, match="int8.safetensors"):
        SFTNet.from_checkpoint(path)
