"""quantize_ with Int8Config(winograd=...): which convs take the Winograd form (sft.qconv2d_winograd) and why, how
close the model stays to the direct int8 model, the fused SFTNet forward running it, the PSNR budget sending the most
sensitive back to the direct conv before any to float, checkpoints keeping the multipliers, bad configs."""
import copy

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models.sftnet import SFTNet
from sft_kernels.nn.quantized import QuantConv2d
from tests.transforms.test_quantize import _sqnr, _sr_pairs


def _sftnet(seed=0):
    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=seed).eval()
    with torch.no_grad():
        model.HR_branch[-1].bias.add_(0.5)
    return model


def _eligible(model) -> list:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
            and m.stride == (1, 1) and m.in_channels >= 16 and m.out_channels >= 16]


def _winograd_convs(model) -> list:
    return [n for n, m in model.named_modules() if isinstance(m, QuantConv2d) and m.winograd_mult is not None]


def test_always_puts_every_eligible_conv_in_the_winograd_form_close_to_direct_int8():
    lr, _ = _sr_pairs()
    model = _sftnet()
    direct, wino = copy.deepcopy(model), copy.deepcopy(model)
    sft_kernels.quantize_(direct, calibration=lr, progress=False)
    rep = sft_kernels.quantize_(wino, sft_kernels.Int8Config(winograd="always"), calibration=lr, progress=False)
    names = _winograd_convs(wino)
    assert names and sorted(names) == sorted(_eligible(model))
    for n in names:
        row = next(r for r in rep.rows if r.name == n)
        assert row.stats["winograd"] and "Winograd" in row.detail
        assert "Winograd" in repr(wino.get_submodule(n))
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        ref, a, b = model(x), direct(x), wino(x)
    assert _sqnr(b, ref) > 25, _sqnr(b, ref)
    assert _sqnr(b, a) > 25, _sqnr(b, a)


def test_fused_forward_runs_the_winograd_convs(monkeypatch):
    lr, _ = _sr_pairs()
    model = _sftnet()
    sft_kernels.convert_(model)
    sft_kernels.quantize_(model, sft_kernels.Int8Config(winograd="always"), calibration=lr, progress=False)
    assert model.fused
    from sft_kernels.nn import quantized

    calls, op = [], quantized.ops.qconv2d_winograd
    monkeypatch.setattr(quantized.ops, "qconv2d_winograd", lambda *a, **k: calls.append(a[0].dtype) or op(*a, **k))
    plain = copy.deepcopy(model)
    plain.fused = False
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        y = model(x)
        n_fused = len(calls)
        y_plain = plain(x)
    assert n_fused == len(_winograd_convs(model)) and torch.uint8 in calls  # uint8 maps handed between int8 convs
    assert _sqnr(y, y_plain) > 30


def test_measured_choice_reports_both_times():
    lr, _ = _sr_pairs()
    model = _sftnet()
    eligible = _eligible(model)
    rep = sft_kernels.quantize_(model, sft_kernels.Int8Config(winograd=True), calibration=lr, progress=False)
    decided = [r for r in rep.rows if "ms direct here" in r.detail or "the Winograd form measured" in r.detail]
    assert sorted(r.name for r in decided) == sorted(eligible)
    for r in decided:
        assert r.stats["winograd"] == ("ms direct here" in r.detail)


def test_budget_sends_winograd_convs_to_the_direct_conv_first():
    lr, _ = _sr_pairs()
    model = _sftnet()
    with torch.no_grad():
        hr = [model(x) + 0.002 * torch.randn(model(x).shape, generator=torch.Generator().manual_seed(1)) for x in lr]
    cfg = sft_kernels.Int8Config(observer="minmax", psnr_budget_db=0.0, winograd="always")
    rep = sft_kernels.quantize_(model, cfg, calibration=lr, targets=hr, progress=False)
    st = rep.stats
    ranked = sorted(st["winograd_sensitivity_db"], key=st["winograd_sensitivity_db"].get, reverse=True)
    assert st["winograd_direct"] == ranked  # a budget of 0 dB: every one, most sensitive first
    assert not _winograd_convs(model)
    assert st["kept"]  # then layers to float
    row = next(r for r in rep.rows if r.name == ranked[0])
    assert ("direct, not Winograd" in row.detail) or row.action == "kept float"


def test_checkpoint_keeps_the_multipliers():
    lr, _ = _sr_pairs()
    model = _sftnet()
    sft_kernels.quantize_(model, sft_kernels.Int8Config(winograd="always"), calibration=lr, progress=False)
    name = _winograd_convs(model)[0]
    q = model.get_submodule(name)
    q2 = QuantConv2d(q.in_channels, q.out_channels, 3, padding=1)
    q2.load_state_dict(q.state_dict())
    assert torch.equal(q2.winograd_mult, q.winograd_mult)
    x = torch.randint(0, 256, (1, q.in_channels, 9, 7), dtype=torch.uint8)
    torch.testing.assert_close(q2(x), q(x))
    q2.set_winograd(None)
    assert "winograd_mult" not in q2.get_extra_state()


def test_bad_configs_and_ineligible_convs():
    with pytest.raises(ValueError, match="winograd must be"):
        sft_kernels.Int8Config(winograd="yes")
    q = QuantConv2d.from_float(nn.Conv2d(16, 16, 3, stride=2, padding=1), 0.1, 0)
    assert not q.winograd_fits()
    with pytest.raises(ValueError, match="Winograd form needs"):
        q.set_winograd(torch.full((16,), 1000, dtype=torch.int32))
    q = QuantConv2d.from_float(nn.Conv2d(16, 16, 3, padding=1), 0.1, 0)
    with pytest.raises(ValueError, match="16 Q15 multipliers"):
        q.set_winograd(torch.zeros(16, dtype=torch.int32))


def test_int8_checkpoint_round_trip_keeps_the_winograd_form(tmp_path):
    """save_int8 / load_int8 (what `sft-kernels quantize --winograd` writes and `--model FILE` reads): the card's
    quantization entries carry the multipliers, and the loaded model's output equals the saved one's."""
    from sft_kernels.models.int8 import load_int8, save_int8

    lr, _ = _sr_pairs()
    model = _sftnet()
    sft_kernels.convert_(model)
    sft_kernels.quantize_(model, sft_kernels.Int8Config(winograd="always"), calibration=lr, progress=False)
    path = save_int8(model, tmp_path / "w8", {"name": "w8"})
    import json

    card = json.loads(path.with_suffix(".json").read_text())
    assert sum("winograd_mult" in v for v in card["quantization"].values()) == len(_winograd_convs(model))
    loaded = load_int8(card, path)
    assert sorted(_winograd_convs(loaded)) == sorted(_winograd_convs(model))
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
