"""to_separable_: the least-squares split is exact at full multiplier and optimal below it, multipliers follow the
config, MACs fall, the report says what it did per layer, and the model keeps working (any CNN, SFTNet, training
through the pair, convert_ afterwards)."""
import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.nn import SeparableConv2d
from sft_kernels.testing import tol
from sft_kernels.transforms.to_separable import split


@pytest.mark.parametrize("cfg", [dict(stride=1, padding=1, dilation=1), dict(stride=2, padding=(1, 2), dilation=1),
                                 dict(stride=(1, 2), padding=2, dilation=2)])
def test_full_multiplier_is_exact(cfg):
    conv = nn.Conv2d(6, 10, (3, 5), **cfg).double()
    x = torch.randn(2, 6, 13, 17, dtype=torch.double)
    pair = split(conv, multiplier=10)  # min(K, R·S) = 10
    assert isinstance(pair, SeparableConv2d) and pair.dw.weight.shape == (60, 1, 3, 5)
    assert pair.dw.bias is None and pair.pw.weight.shape == (10, 60, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(pair(x), conv(x), **tol("fp64_pointwise"))


def test_split_is_the_least_squares_optimum():
    """Below full rank the weight error is the sum of the dropped squared singular values of every channel's
    K x R·S slice (Eckart–Young), and a perturbed factorisation is never closer."""
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 12, 3, padding=1, bias=False).double()
    pair = split(conv, multiplier=2)
    k, c = 12, 5
    p = pair.pw.weight.detach().reshape(k, c, 2)
    d = pair.dw.weight.detach().reshape(c, 2, 9)
    approx = torch.einsum("kcj,cjt->kct", p, d)
    w = conv.weight.detach().reshape(k, c, 9)
    err = ((approx - w) ** 2).sum()
    sv = torch.linalg.svdvals(w.permute(1, 0, 2))
    torch.testing.assert_close(err, (sv[:, 2:] ** 2).sum())
    for _ in range(5):
        noisy = torch.einsum("kcj,cjt->kct", p + 1e-3 * torch.randn_like(p), d + 1e-3 * torch.randn_like(d))
        assert ((noisy - w) ** 2).sum() >= err


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Conv2d(32, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2)).eval()


def test_to_separable_reports_every_layer_and_saves_macs():
    model = _cnn()
    x = torch.randn(1, 3, 12, 12)
    report = sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=2), example=x)
    rows = {r.name: r for r in report.rows}
    assert rows["2"].action == "separable" and isinstance(model[2], SeparableConv2d)
    st = rows["2"].stats
    assert st["multiplier"] == 2 and st["macs_after"] == 16 * 2 * (9 + 32) < st["macs_before"] == 32 * 16 * 9
    assert st["params_after"] < st["params_before"] and "ms_before" in st and "multiplier 2/9" in rows["2"].detail
    assert 0 < st["energy_kept"] < 1
    assert rows["5"].action == "skipped" and "grouped" in rows["5"].detail
    assert rows["0"].stats["macs_after"] == 3 * 2 * (9 + 16)
    assert "4" not in rows or rows["4"].action == "skipped"  # 1x1
    with torch.no_grad():
        assert model(x).shape == (1, 8, 6, 6)
    assert "to_separable_" in str(report)
    narrow = nn.Sequential(nn.Conv2d(8, 2, 3))  # 8·2·(9 + 2) MACs per pixel against 2·8·9: not converted
    rep = sft_kernels.to_separable_(narrow, sft_kernels.SeparableConfig(multiplier=2))
    assert rep.rows[0].action == "skipped" and "would not save MACs" in rep.rows[0].detail


def test_energy_picks_the_multiplier():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(8, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1)).eval()
    # keeping (almost) all the energy takes the full multiplier, 9: a pair costing more MACs than the conv
    report = sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(energy=0.99999999))
    assert all(r.action == "skipped" and "multiplier 9 would not save MACs" in r.detail for r in report.rows)
    assert isinstance(model[0], nn.Conv2d) and not isinstance(model[0], SeparableConv2d)
    weights = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    report = sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(energy=0.5))
    for r, w in zip(report.rows, weights):
        m = r.stats["multiplier"]
        assert r.action == "separable" and 1 <= m < 9 and r.stats["energy_kept"] >= 0.5
        sv2 = torch.linalg.svdvals(w.double().permute(1, 0, 2, 3).flatten(2)) ** 2  # per channel slice
        assert sv2[:, :m - 1].sum() / sv2.sum() < 0.5  # the smallest multiplier that keeps it


def test_sftnet_trunk_trains_and_converts():
    only_trunk = lambda m, name: name.startswith("sft_branch") and m.kernel_size == (3, 3)  # noqa: E731
    converted = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0)
    sft_kernels.convert_(converted)
    assert converted.fused
    report = sft_kernels.to_separable_(converted, sft_kernels.SeparableConfig(multiplier=1, filter_fn=only_trunk))
    assert len([r for r in report.rows if r.action == "separable"]) == 2 * 2 + 1
    assert not converted.fused and any(r.action == "note" for r in report.rows)  # fused forward needs plain convs

    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0)  # as a training run does it: unconverted
    sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=1, filter_fn=only_trunk))
    model.train()
    x = torch.rand(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # trains through PyTorch's convs, autocast included
        loss = model(x).float().abs().mean()
    loss.backward()
    pair = next(m for m in model.modules() if isinstance(m, SeparableConv2d))
    assert pair.dw.weight.grad is not None and pair.pw.weight.grad is not None
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 32, 32)
    sft_kernels.convert_(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), y, **tol("fp32"))


def test_config_errors():
    with pytest.raises(ValueError, match="multiplier"):
        sft_kernels.SeparableConfig(multiplier=0)
    with pytest.raises(ValueError, match="energy"):
        sft_kernels.SeparableConfig(energy=1.5)


def test_psnr_budget_keeps_the_separable_model_within_it():
    from tests.transforms.test_factorize import _scored_cnn

    model, inputs, targets = _scored_cnn()
    report = sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=1, psnr_budget_db=0.02),
                                       calibration=inputs, targets=targets, progress=False)
    st = report.stats
    assert st["psnr_after"] >= st["psnr_before"] - 0.02 and st["psnr_all"] < st["psnr_after"]
    assert any("PSNR budget" in r.detail for r in report.rows)
