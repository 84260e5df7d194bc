"""Channel pruning of models that do not describe their dependency groups: the groups traced with torch.fx
(transforms/prune/trace.py), checked against a masked twin of the unpruned model (the removed channels' producers
zeroed), then saved, loaded, converted and exported like any model."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels as sk
from sft_kernels.testing import tol
from sft_kernels.transforms.prune import prune_channels_
from sft_kernels.transforms.prune.trace import channel_groups
from sft_kernels.transforms.restore import restore_

from tests.transforms.zoo import EDSRish, mobilenet


class Fixed(nn.Module):
    """Spaces that must keep every channel: a concatenation, a grouped conv, a parameter used as a tensor."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.c, self.d = nn.Conv2d(16, 12, 1), nn.Conv2d(12, 12, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1, 12, 1, 1))
        self.e, self.f = nn.Conv2d(12, 8, 1), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = self.g(torch.cat([self.a(x), self.b(x)], 1))
        z = self.d(F.relu(self.c(y))) * self.scale
        return self.f(F.gelu(self.e(z)))


def _random_bn(model):
    gen = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def _masked_twin(model, groups, done):
    """The unpruned model with each removed channel's producers (and the batch norms and depthwise convs that
    follow it) zeroed: what the pruned model must compute where activations map 0 to 0."""
    twin = copy.deepcopy(model)
    mods = dict(twin.named_modules())
    with torch.no_grad():
        for g, (_, size, _, keep) in zip(groups, done):
            drop = sorted(set(range(size)) - set(keep))
            for name, r2 in g.producers:
                idx = torch.tensor([d * r2 + j for d in drop for j in range(r2)], dtype=torch.long)
                mods[name].weight[idx] = 0
                if mods[name].bias is not None:
                    mods[name].bias[idx] = 0
            for name in g.followers:
                mods[name].weight[drop] = 0
                if mods[name].bias is not None:
                    mods[name].bias[drop] = 0
    return twin


@pytest.mark.parametrize("build", [mobilenet, EDSRish], ids=["mobilenet-like", "edsr-like"])
def test_traced_channel_pruning_matches_the_masked_model(build, tmp_path):
    torch.manual_seed(0)
    model = _random_bn(build())
    x = torch.rand(2, 3, 21, 26)
    groups = channel_groups(model, x)
    pruned = copy.deepcopy(model)
    rep = sk.prune_(pruned, sk.PruneConfig(pattern="channel", sparsity=0.5), example=x)
    done = prune_channels_(copy.deepcopy(model), 0.5, example=x)
    assert [d[0] for d in done] == [g.name for g in groups] and len(groups) >= 3
    assert rep.stats["macs_after"] < 0.5 * rep.stats["macs_before"]
    twin = _masked_twin(model, groups, done)
    with torch.no_grad():
        for inp in (x, torch.rand(1, 3, 30, 17).contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(pruned(inp), twin(inp), **tol("fp32_tight"))
        want = pruned(x)
    # a fresh model takes the pruned one's state_dict once rebuilt to its widths (batch norms, Linear included)
    fresh = build().eval()
    restore_(fresh, pruned.state_dict())
    fresh.load_state_dict(pruned.state_dict())
    converted = copy.deepcopy(fresh)
    sk.convert_(converted)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), want, **tol("fp32_tight"))
        torch.testing.assert_close(converted(x), want, **tol("fp32"))
    onnx = pytest.importorskip("onnxruntime")
    path = tmp_path / "pruned.onnx"
    sk.export_onnx(converted, x, str(path))
    got = onnx.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), want, **tol("fp32"))


def test_traced_groups_follow_depthwise_convs_batch_norms_and_the_classifier():
    model = _random_bn(mobilenet())
    groups = {g.name: g for g in channel_groups(model, torch.rand(1, 3, 16, 16))}
    residual = groups["0 (+1 sharing its channels)"]  # the stem and the block writing into its residual add
    assert residual.producers == [("0", 1), ("2.b.6", 1)] and residual.consumers == ["2.b.0", "3.b.0"]
    assert residual.followers == ["2.b.7"]
    assert groups["2.b.0"].followers == ["2.b.1", "2.b.3", "2.b.4"]  # BN, depthwise conv, BN
    assert groups["5"].consumers == ["8"]  # pooled and flattened: the Linear reads the channels


def test_concatenated_grouped_and_parameter_scaled_channels_stay():
    model = Fixed().eval()
    x = torch.rand(1, 3, 12, 12)
    groups = channel_groups(model, x)
    assert [g.name for g in groups] == ["c", "e"]  # a, b (cat), g (grouped), d (× parameter), f (output): fixed
    pruned = copy.deepcopy(model)
    prune_channels_(pruned, 0.5, example=x)
    assert (pruned.c.out_channels, pruned.d.in_channels, pruned.d.out_channels) == (8, 8, 12)
    assert (pruned.e.out_channels, pruned.f.in_channels, pruned.a.out_channels) == (4, 4, 8)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape


def test_untraceable_models_say_what_to_do():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return self.a(x) if x.mean() > 0 else -self.a(x)  # data-dependent: torch.fx cannot trace it

    with pytest.raises(ValueError, match="could not be traced with torch.fx.*_sft_kernels_channel_groups"):
        sk.prune_(Branchy(), sk.PruneConfig(pattern="channel", sparsity=0.5), example=torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="pass example="):
        prune_channels_(Branchy(), 0.5)


@pytest.mark.parametrize("bn,dtype", [(dict(affine=False), torch.float32), (dict(track_running_stats=False),
                                                                            torch.float32), ({}, torch.float64)],
                         ids=["bn-not-affine", "bn-no-running-stats", "float64"])
def test_batch_norm_variants_and_float64_models(bn, dtype):
    """Batch norms without affine parameters or without running statistics follow their group, a float64 model's
    rebuilt layers stay float64, and the pruned state_dict loads into a fresh model."""
    def build():
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16, **bn), nn.ReLU(),
                             nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 3, 3, padding=1)).to(dtype)

    torch.manual_seed(0)
    x = torch.rand(2, 3, 11, 9, dtype=dtype)
    model = build().eval()
    report = sk.prune_(model, sk.PruneConfig(pattern="channel", sparsity=0.5), example=x)
    assert [r.detail for r in report.rows if r.action == "channels"] == ["8/16 channels kept"]
    assert all(p.dtype == dtype for p in model.parameters()) and model[1].num_features == 8
    with torch.no_grad():
        want = model(x)
    fresh = build().eval()
    restore_(fresh, model.state_dict())
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), want, **tol("exact"))
