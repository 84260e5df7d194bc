"""factorize_: spatial SVD is exact at full rank, ranks follow the config, MACs fall, the report says what it did
per layer, and the factorized model keeps working with convert_ (any CNN and SFTNet)."""
import copy

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.testing import tol
from sft_kernels.transforms.factorize import SpatialSVDConv2d, split, total_macs_ratio
from tests.transforms.zoo import ResidualConvs


@pytest.mark.parametrize("cfg", [dict(stride=1, padding=1, dilation=1), dict(stride=2, padding=(1, 2), dilation=1),
                                 dict(stride=(1, 2), padding=2, dilation=2)])
def test_full_rank_split_is_exact(cfg):
    conv = nn.Conv2d(6, 10, (3, 5), **cfg).double()
    x = torch.randn(2, 6, 13, 17, dtype=torch.double)
    pair = split(conv, rank=6 * 3)
    assert isinstance(pair, SpatialSVDConv2d) and pair.rank == 18
    torch.testing.assert_close(pair(x), conv(x), **tol("fp64_pointwise"))
    low = split(conv, rank=4)
    assert low.v.weight.shape == (4, 6, 3, 1) and low.h.weight.shape == (10, 4, 1, 5)


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2)).eval()


def test_factorize_by_mac_ratio_reports_every_layer():
    model = _cnn()
    x = torch.randn(1, 3, 12, 12)
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(mac_ratio=0.5), example=x)
    rows = {r.name: r for r in report.rows}
    assert rows["2"].action == "factorized" and isinstance(model[2], SpatialSVDConv2d)
    assert rows["2"].stats["macs_after"] <= 0.5 * rows["2"].stats["macs_before"]
    assert "ms_before" in rows["2"].stats and "rank" in rows["2"].detail
    assert rows["5"].action == "skipped" and "grouped" in rows["5"].detail
    assert "4" not in rows or rows["4"].action == "skipped"  # 1x1: left alone
    assert rows["0"].stats["rank"] == 3  # 3 -> 16: 0.5 x 432 MACs / (3·3 + 16·3) per rank
    assert total_macs_ratio(report) <= 0.5
    with torch.no_grad():
        assert model(x).shape == (1, 8, 12, 12)


def test_energy_rank_and_converted_model():
    torch.manual_seed(0)
    model = _cnn()
    x = torch.randn(1, 3, 10, 9)
    with torch.no_grad():
        expected = model(x)
    sft_kernels.convert_(model)
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(energy=1.0))
    assert [r.name for r in report.rows if r.action == "factorized"] == []  # full energy: no saving anywhere
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(energy=0.999999999))
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, **tol("fp32"))


def test_sftnet_trunk_halved():
    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0).eval()
    only_trunk = lambda m, name: name.startswith("sft_branch") and m.kernel_size == (3, 3)  # noqa: E731
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(mac_ratio=0.5, filter_fn=only_trunk))
    done = [r for r in report.rows if r.action == "factorized"]
    assert len(done) == 2 * 2 + 1  # two convs per block and the trunk's closing conv
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    assert "factorize_" in str(report)


def test_config_errors():
    with pytest.raises(ValueError, match="exactly one"):
        sft_kernels.SVDConfig()
    with pytest.raises(ValueError, match="exactly one"):
        sft_kernels.SVDConfig(rank=4, mac_ratio=0.5)
    with pytest.raises(ValueError, match="mac_ratio"):
        sft_kernels.SVDConfig(mac_ratio=1.5)
    with pytest.raises(ValueError, match="example="):
        sft_kernels.factorize_(_cnn(), sft_kernels.SVDConfig(target_speedup=1.5))


def test_converted_sftnet_leaves_its_fused_forward_when_factorized():
    model = SFTNet(num_blocks=1, channels=16).reset_parameters_(seed=2).eval()
    sft_kernels.convert_(model)
    assert model.fused
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(mac_ratio=0.5))
    assert not model.fused and any(r.action == "note" for r in report.rows)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    sft_kernels.convert_(model)  # converting again keeps it off: its trunk convs are pairs now
    assert not model.fused


def _scored_cnn():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)).eval()
    inputs = [torch.rand(2, 3, 12, 12) for _ in range(2)]
    with torch.no_grad():  # targets near the model's outputs: a finite PSNR to keep within a budget of
        targets = [(model(x) + 0.01 * torch.randn(2, 3, 12, 12)) for x in inputs]
    return model, inputs, targets


@pytest.mark.parametrize("budget", [0.05, 100.0])
def test_psnr_budget_restores_the_most_sensitive_layers(budget):
    model, inputs, targets = _scored_cnn()
    report = sft_kernels.factorize_(model, sft_kernels.SVDConfig(rank=1, psnr_budget_db=budget), calibration=inputs,
                                    targets=targets, progress=False)
    st = report.stats
    assert st["psnr_all"] < st["psnr_before"] - 0.05  # rank 1 everywhere costs more than the small budget
    assert st["psnr_after"] >= st["psnr_before"] - budget
    restored = [r for r in report.rows if "PSNR budget" in r.detail]
    if budget == 100.0:
        assert not restored and st["psnr_after"] == st["psnr_all"]
    else:
        assert restored and all(isinstance(model[int(r.name)], nn.Conv2d) for r in restored)
        assert any(r.action == "factorized" for r in report.rows) or len(restored) == 4


def test_psnr_budget_errors():
    model, inputs, targets = _scored_cnn()
    with pytest.raises(ValueError, match="calibration="):
        sft_kernels.factorize_(model, sft_kernels.SVDConfig(rank=1, psnr_budget_db=0.1))
    with pytest.raises(ValueError, match="pair with"):
        sft_kernels.factorize_(model, sft_kernels.SVDConfig(rank=1, psnr_budget_db=0.1), calibration=inputs,
                               targets=targets[:1])
    with pytest.raises(ValueError, match=">= 0 dB"):
        sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(psnr_budget_db=-1), calibration=inputs,
                                  targets=targets)


@pytest.mark.parametrize("transform", ["factorize_", "to_separable_"])
def test_example_may_be_a_tuple_of_inputs(transform):
    """example=(lr, seg), as prune_ takes it: the layers' times are measured on what each conv sees."""
    model = SFTNet("pytorch", num_blocks=1, channels=16).eval()
    config = sft_kernels.SVDConfig(rank=4) if transform == "factorize_" else sft_kernels.SeparableConfig(multiplier=2)
    report = getattr(sft_kernels, transform)(model, config, example=(torch.rand(1, 3, 12, 12),
                                                                     torch.rand(1, 8, 48, 48)), progress=False)
    assert any("ms_after" in r.stats for r in report.rows)


@pytest.mark.parametrize("transform", ["factorize_", "to_separable_"])
def test_decomposing_fused_and_pruned_convs(transform):
    """A fuse_for_inference graph's convs carry a fused activation and residual: their pairs keep both, so the fused
    model decomposes to the same function as the plain one (the activation had been dropped, a residual had raised).
    A pruned conv's pair is made from its masked weight (the halves had been built as SparseConv2d without masks)."""
    decompose = getattr(sft_kernels, transform)
    config = sft_kernels.SVDConfig(rank=4) if transform == "factorize_" else sft_kernels.SeparableConfig(multiplier=2)

    torch.manual_seed(0)
    x = torch.rand(2, 3, 13, 10)
    model = ResidualConvs(relu=True).eval()
    fused = sft_kernels.fuse_for_inference(copy.deepcopy(model), x)
    assert "residual" in fused.code and fused.a.activation == "relu"
    decompose(fused, config, progress=False)
    decompose(model, config, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), **tol("fp32"))

    seq = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    masked = copy.deepcopy(seq)  # plain convs given the pruned weights
    sft_kernels.prune_(seq, sft_kernels.PruneConfig(sparsity=0.5))
    for i in (0, 2):
        masked[i].weight.data = seq[i].weight.detach() * seq[i].mask
    decompose(seq, config, progress=False)
    decompose(masked, config, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(seq(x), masked(x), **tol("fp32"))


@pytest.mark.parametrize("transform", ["factorize_", "to_separable_"])
def test_a_bare_state_dict_of_a_decomposed_sftnet_loads(transform, tmp_path):
    """A decomposed SFTNet saved as a plain safetensors file (no card): its architecture is read from the pair's
    keys (conv0.h / conv0.pw; it had asked for 'conv0.weight') and the loaded model computes the same."""
    from safetensors.torch import save_file

    from sft_kernels.models.pretrained import resolve_model

    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0).eval()
    config = sft_kernels.SVDConfig(rank=4) if transform == "factorize_" else sft_kernels.SeparableConfig(multiplier=2)
    getattr(sft_kernels, transform)(model, config, progress=False)
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    x = torch.rand(1, 3, 9, 10)
    for loaded in (SFTNet.from_checkpoint(path), resolve_model(path)):
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), **tol("exact"))
