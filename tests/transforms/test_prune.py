"""prune_: each pattern's masks (exact sparsity per layer or globally, N:M groups, blocks of output channels), the
pruned model computing exactly what its masked dense twin does (SFTNet fused and not, a ResNet-like CNN), the
report (density, nonzeros, MACs), repeated pruning (AGP), training through the mask, save / load, bad inputs."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels as sk
from sft_kernels.models import SFTNet
from sft_kernels.nn import SparseConv2d
from sft_kernels.testing import tol
from sft_kernels.transforms.prune import agp_sparsity, masks, restore_pruned_


def _sftnet():
    return SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=3).eval()


def _inputs():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 12, 10, generator=gen), torch.rand(1, 8, 48, 40, generator=gen)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.a = nn.Conv2d(16, 32, 3, 2, 1)
        self.b = nn.Conv2d(32, 32, 3, 1, 1)
        self.down = nn.Conv2d(16, 32, 1, 2)
        self.fc = nn.Conv2d(32, 10, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.b(F.relu(self.a(x)))) + self.down(x)
        return self.fc(y).mean((2, 3))


def _dense_twin(model):
    """The model with plain convs holding the masked weights."""
    twin = copy.deepcopy(model)
    for name, m in list(twin.named_modules()):
        for cname, c in list(m.named_children()):
            if isinstance(c, SparseConv2d):
                plain = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                                  c.groups, c.bias is not None)
                plain.load_state_dict({"weight": c.weight * c.mask, **({"bias": c.bias} if c.bias is not None else {})})
                setattr(m, cname, plain)
    if hasattr(twin, "fused"):
        twin.fused = False
    return twin


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_unstructured_per_layer_matches_masked_dense_model(sparsity):
    model = _sftnet()
    img, seg = _inputs()
    rep = sk.prune_(model, sk.PruneConfig(sparsity=sparsity), example=(img, seg))
    pruned = [m for m in model.modules() if isinstance(m, SparseConv2d)]
    assert pruned and model.fused
    for m in pruned:
        assert abs(m.density - (1 - sparsity)) <= 1 / m.mask.numel() + 1e-9
        assert bool(((m.weight != 0) <= m.mask).all())
    rows = [r for r in rep.rows if r.action == "pruned"]
    assert len(rows) == len(pruned) and all(r.stats["macs_after"] < r.stats["macs_before"] for r in rows)
    assert "HR_branch.8" in rep.names("skipped")  # 3 output channels < min_out_channels
    assert abs(rep.stats["sparsity"] - sparsity) < 0.01
    with torch.no_grad():
        torch.testing.assert_close(model(img, seg), _dense_twin(model)(img, seg), **tol("fp32"))


def test_report_counts_macs_of_a_converted_fused_model():
    model = _sftnet()
    sk.convert_(model)
    assert model.fused
    rep = sk.prune_(model, sk.PruneConfig(sparsity=0.5), example=_inputs())
    assert rep.stats["macs_before"] > 0 and rep.stats["macs_after"] < 0.6 * rep.stats["macs_before"]


def test_global_scope_reaches_the_total_sparsity_with_uneven_layers():
    model = _sftnet()
    rep = sk.prune_(model, sk.PruneConfig(sparsity=0.8, scope="global"))
    assert abs(rep.stats["sparsity"] - 0.8) < 0.01
    dens = sorted(m.density for m in model.modules() if isinstance(m, SparseConv2d))
    assert dens[-1] - dens[0] > 0.05
    # weights of a few values (many equal magnitudes): exactly the share asked, not every weight at the threshold
    torch.manual_seed(0)
    coarse = nn.Sequential(nn.Conv2d(16, 16, 3), nn.Conv2d(16, 32, 3))
    for conv in coarse:
        conv.weight.data = torch.randint(1, 3, conv.weight.shape).float() * 0.05
    rep = sk.prune_(coarse, sk.PruneConfig(sparsity=0.3, scope="global"))
    assert abs(rep.stats["sparsity"] - 0.3) < 1e-3


def test_n_m_and_block_patterns():
    model = _sftnet()
    rep = sk.prune_(model, sk.PruneConfig(pattern="n:m", n=2, m=4))
    for m in model.modules():
        if isinstance(m, SparseConv2d):
            k, c, r, s = m.mask.shape
            groups = m.mask.permute(0, 2, 3, 1).reshape(-1, 4)
            assert bool((groups.sum(1) == 2).all())
    assert any("n:m groups 4 input channels" in r.detail for r in rep.rows if r.action == "skipped")  # conv0: 3
    with pytest.raises(ValueError, match="choose m dividing 3"):
        masks.n_m(torch.randn(8, 3, 3, 3), 2, 4)

    model = TinyResNet().eval()
    sk.prune_(model, sk.PruneConfig(sparsity=0.75, pattern="block", block=4))
    for m in model.modules():
        if isinstance(m, SparseConv2d):
            full = m.mask.shape[0] // 4 * 4
            blocks = m.mask[:full].reshape(-1, 4, *m.mask.shape[1:])
            assert bool((blocks.all(1) | ~blocks.any(1)).all())  # each block all kept or all pruned
            tail = m.mask[full:]
            assert bool((tail.all(0) | ~tail.any(0)).all())  # the last, partial block too
            assert m.block == 4


def test_other_cnn_matches_masked_dense_model_nchw_and_channels_last():
    model = TinyResNet().eval()
    x = torch.randn(2, 3, 33, 29)
    rep = sk.prune_(model, sk.PruneConfig(sparsity=0.85), example=x)
    assert set(rep.names("pruned")) == {"stem", "a", "b", "down", "fc"}
    twin = _dense_twin(model)
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(model(inp), twin(inp), **tol("fp32"))


def test_repeated_pruning_keeps_earlier_zeros_and_agp_schedule():
    model = TinyResNet()
    sk.prune_(model, sk.PruneConfig(sparsity=0.3))
    before = {n: m.mask.clone() for n, m in model.named_modules() if isinstance(m, SparseConv2d)}
    sk.prune_(model, sk.PruneConfig(sparsity=0.6))
    for n, m in model.named_modules():
        if isinstance(m, SparseConv2d):
            assert bool((m.mask <= before[n]).all()) and abs(m.density - 0.4) < 0.02
    assert agp_sparsity(0, 0.7, 100) == 0 and agp_sparsity(100, 0.7, 100) == pytest.approx(0.7)
    assert agp_sparsity(50, 0.7, 100) == pytest.approx(0.7 * (1 - 0.5 ** 3))


def test_training_leaves_pruned_weights_at_zero():
    model = TinyResNet().train()
    sk.prune_(model, sk.PruneConfig(sparsity=0.7))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        loss = model(torch.randn(2, 3, 16, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        assert all(bool((m.weight.grad[~m.mask] == 0).all()) for m in model.modules() if isinstance(m, SparseConv2d))
        opt.step()
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))  # inference re-applies the masks to weights an optimizer moved
    assert all(bool((m.weight[~m.mask] == 0).all()) for m in model.modules() if isinstance(m, SparseConv2d))


def test_pruned_sftnet_saves_loads_and_runs_fused(tmp_path):
    from safetensors.torch import save_file

    model = _sftnet()
    sk.prune_(model, sk.PruneConfig(sparsity=0.9))
    img, seg = _inputs()
    with torch.no_grad():
        want = model(img, seg)
    path = tmp_path / "pruned.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = SFTNet.from_checkpoint(path)
    assert isinstance(loaded.sft_branch[0].conv0, SparseConv2d) and loaded.fused
    with torch.no_grad():
        torch.testing.assert_close(loaded(img, seg), want, **tol("fp32_tight"))
    fresh = _sftnet()
    assert restore_pruned_(fresh, model.state_dict())
    fresh.load_state_dict(model.state_dict())


def test_bad_inputs():
    for s in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
            sk.PruneConfig(sparsity=s)
    with pytest.raises(ValueError, match="pattern must be one of"):
        sk.PruneConfig(pattern="random")
    with pytest.raises(ValueError, match="pattern='unstructured' only"):
        sk.PruneConfig(pattern="block", scope="global")
    with pytest.raises(ValueError, match="0 < n <= m"):
        sk.PruneConfig(pattern="n:m", n=5, m=4)
    conv = nn.Conv2d(8, 8, 3)
    with pytest.raises(ValueError, match="does not match the weight"):
        SparseConv2d.from_conv(conv, torch.ones(8, 8, 3, 1, dtype=torch.bool))


def test_channel_pruning_shrinks_sftnet_by_dependency_groups(tmp_path):
    from safetensors.torch import save_file

    from sft_kernels.transforms.prune import prune_channels_

    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=3).eval()
    img, seg = _inputs()
    rep = sk.prune_(model, sk.PruneConfig(pattern="channel", sparsity=0.5), example=(img, seg))
    row = next(r for r in rep.rows if r.name == "sft_branch.0.conv0")
    assert row.stats["macs_after"] * 4 == row.stats["macs_before"]  # half in, half out
    assert rep.stats["macs_after"] < rep.stats["macs_before"]
    assert model.conv0.out_channels == 8 and model.sft_branch[0].conv0.in_channels == 8
    assert model.sft_branch[0].sft0.SFT_scale_conv1.out_channels == 8  # SFT outputs follow the trunk
    assert model.sft_branch[0].sft1.SFT_shift_conv1.out_channels == model.sft_branch[0].conv0.out_channels == 8
    assert model.HR_branch[0].out_channels == 32 and model.HR_branch[3].in_channels == 8  # whole r² groups
    assert model.CondNet[8].out_channels == 32  # the condition network is left whole
    with torch.no_grad():
        want = model(img, seg)
    assert want.shape == (1, 3, 48, 40) and model.fused
    path = tmp_path / "half.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = SFTNet.from_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(img, seg), want, **tol("fp32_tight"))
    sk.convert_(loaded)
    onnx_path = tmp_path / "half.onnx"
    sk.export_onnx(loaded, (img, seg), str(onnx_path))
    assert onnx_path.stat().st_size > 10000
    with pytest.raises(ValueError, match="does not describe its channel dependency groups"):
        prune_channels_(TinyResNet(), 0.5)


def test_channel_pruning_keeps_the_strongest_channels():
    """Channels whose weights were zeroed everywhere in their group are the ones removed."""
    from sft_kernels.transforms.prune import prune_channels_

    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=0).eval()
    with torch.no_grad():
        for name in ("sft_branch.0.conv0",):
            model.get_submodule(name).weight[[1, 4, 6, 7]] = 0
        model.get_submodule("sft_branch.0.conv1").weight[:, [1, 4, 6, 7]] = 0
    done = dict((g, idx) for g, _, _, idx in prune_channels_(model, 0.5))
    assert done["sft_branch.0 inner"] == [0, 2, 3, 5]


def test_pruning_a_converted_conv_keeps_its_fused_activation():
    conv = sk.nn.Conv2d(16, 16, 3, padding=1, activation="leaky_relu", negative_slope=0.2)
    model = nn.Sequential(conv).eval()
    sk.prune_(model, sk.PruneConfig(sparsity=0.95))
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        want = F.leaky_relu(F.conv2d(x, model[0].weight * model[0].mask, model[0].bias, padding=1), 0.2)
        torch.testing.assert_close(model(x), want, **tol("fp32"))


def test_sparse_kernel_runs_where_it_pays_and_dense_elsewhere(monkeypatch):
    from sft_kernels.nn import sparse as sparse_mod

    calls = []
    real = sparse_mod.ops.sparse_conv2d
    monkeypatch.setattr(sparse_mod.ops, "sparse_conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(1, 32, 12, 12)
    for sparsity, pattern, expect in ((0.95, "unstructured", True), (0.5, "unstructured", False),
                                      (0.9, "block", True), (0.3, "block", False)):
        model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1)).eval()
        sk.prune_(model, sk.PruneConfig(sparsity=sparsity, pattern=pattern))
        calls.clear()
        with torch.no_grad():
            model(x)
        assert bool(calls) == expect, (sparsity, pattern)
    model.train()  # training runs the dense masked conv, with autograd
    calls.clear()
    model(x).sum().backward()
    assert not calls and model[0].weight.grad is not None


def test_a_layer_pruned_to_exactly_the_limit_runs_sparse():
    """80 % of a 1×1 conv's 64·51 = 3264 weights is 2611.2: 653 kept, 20.006 %, over the 20 % limit by rounding
    alone; it runs sparse like a layer that rounded the other way."""
    for k, c in ((64, 51), (64, 64), (100, 33)):
        model = nn.Sequential(nn.Conv2d(c, k, 1)).eval()
        sk.prune_(model, sk.PruneConfig(sparsity=0.8))
        assert model[0]._sparse(), (k, c, model[0].density)
    model = nn.Sequential(nn.Conv2d(64, 64, 1)).eval()
    sk.prune_(model, sk.PruneConfig(sparsity=0.75))
    assert not model[0]._sparse()


def test_filter_fn_takes_module_then_name_and_channel_pruning_explains_converted_convs():
    """filter_fn(module, name), as convert_'s and the configs'; channel pruning a converted model traces it (our
    convs stay single nodes) and says why nothing was pruned instead of failing to trace."""
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    report = sk.prune_(model, sk.PruneConfig(sparsity=0.5), filter_fn=lambda m, name: name != "0")
    assert {(r.name, r.action) for r in report.rows} == {("0", "skipped"), ("2", "pruned")}
    assert type(model[0]) is nn.Conv2d and isinstance(model[2], SparseConv2d)

    x = torch.rand(1, 3, 12, 12)
    converted = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)).eval()
    sk.convert_(converted)
    report = sk.prune_(converted, sk.PruneConfig(pattern="channel"), example=x)
    assert [r.action for r in report.rows] == ["note"] and "prune channels before convert_" in report.rows[0].detail
    assert converted(x).shape == (1, 3, 12, 12)


@pytest.mark.parametrize("pattern", ["unstructured", "block"])
def test_pruned_model_compiles_with_fullgraph(pattern):
    """The mask's version check is skipped while compiling (it had stopped fullgraph=True on a data-dependent
    guard); the compiled model matches the eager one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)).eval()
    sk.prune_(model, sk.PruneConfig(sparsity=0.5, pattern=pattern))
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), **tol("fp32"))
