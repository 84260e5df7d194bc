"""quantize_ / Int8Config / QuantConv2d: calibration and observers, the per-layer report, the PSNR budget (sensitive
layers back to float or W8A16), SFTNet (plain and fused forward, uint8 hand-over in the HR branch) and other CNNs
(SRResNet-, EDSR-, CARN-like blocks, a ResNet bottleneck with batch norm and a grouped conv), state_dict round trips,
bad inputs."""
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.nn import QuantConv2d, QuantLinear
from sft_kernels.testing import tol
from sft_kernels.transforms.observers import Observer, affine_qparams, fake_quantize

from tests.conftest import op_backends
from tests.transforms.zoo import EDSRish as EDSRLike  # residual blocks without batch norm, PixelShuffle
from tests.transforms.zoo import ResidualConvs


def _sqnr(y, ref):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((y - ref) ** 2).sum()), 1e-20))


class CARNLike(nn.Module):
    """Cascading 1×1 fusions of concatenated features and a grouped conv (int8: the dense kernel per group)."""

    def __init__(self, c=16):
        super().__init__()
        self.entry = nn.Conv2d(3, c, 3, padding=1)
        self.b1 = nn.Conv2d(c, c, 3, padding=1, groups=4)
        self.f1 = nn.Conv2d(2 * c, c, 1)
        self.exit = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        e = torch.relu(self.entry(x))
        b = torch.relu(self.b1(e))
        return self.exit(torch.relu(self.f1(torch.cat([e, b], 1))))


class MobileNetV2Like(nn.Module):
    """Inverted residuals: 1×1 expand, depthwise 3×3 (stride 1 with the residual, then stride 2), 1×1 project, batch
    norm and ReLU6, and a classifier head."""

    def __init__(self, c=16, t=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU6())

        def block(stride):
            return nn.Sequential(nn.Conv2d(c, t * c, 1), nn.BatchNorm2d(t * c), nn.ReLU6(),
                                 nn.Conv2d(t * c, t * c, 3, stride, 1, groups=t * c), nn.BatchNorm2d(t * c),
                                 nn.ReLU6(), nn.Conv2d(t * c, c, 1), nn.BatchNorm2d(c))

        self.b1, self.b2 = block(1), block(2)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        s = self.stem(x)
        y = s + self.b1(s)
        return self.fc(self.b2(y).mean((2, 3)))


class Bottleneck(nn.Module):
    """A ResNet-50 bottleneck (batch norm, stride 2, projection shortcut) and a classifier head."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 7, 2, 3), nn.BatchNorm2d(c), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 2, 1),
                               nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 4 * c, 1), nn.BatchNorm2d(4 * c))
        self.proj = nn.Sequential(nn.Conv2d(c, 4 * c, 1, 2), nn.BatchNorm2d(4 * c))
        self.fc = nn.Linear(4 * c, 10)

    def forward(self, x):
        s = self.stem(x)
        y = torch.relu(self.a(s) + self.proj(s))
        return self.fc(y.mean((2, 3)))


def _trained_like(model, seed=0):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("make", [EDSRLike, CARNLike, MobileNetV2Like, Bottleneck], ids=lambda f: f.__name__)
@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse"])
def test_any_cnn_quantizes_close_to_float(make, observer):
    model = _trained_like(make())
    calib = [torch.rand(2, 3, 24, 24) for _ in range(3)]
    x = torch.rand(1, 3, 20, 28)  # held out, another size, NCHW
    with torch.no_grad():
        ref = model(x)
    report = sft_kernels.quantize_(model, sft_kernels.Int8Config(observer=observer), calibration=calib,
                                   progress=False)
    convs = [n for n, m in model.named_modules() if isinstance(m, QuantConv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]  # classifier heads
    assert convs and sorted(convs + linears) == sorted(report.names("quantized"))
    assert len(linears) == sum(isinstance(m, nn.Linear) for m in make().modules())
    for row in report.rows:
        if row.action == "quantized":
            assert row.stats["input_scale"] > 0 and 0 <= row.stats["input_zero_point"] <= 255
    if make is MobileNetV2Like:  # every conv int8, the depthwise ones included
        assert len(convs) == 7 and isinstance(model.b2[3], QuantConv2d) and model.b2[3].groups == 64
    with torch.no_grad():
        y = model(x)
    assert y.shape == ref.shape
    assert _sqnr(y, ref) > 25, _sqnr(y, ref)  # 8-bit: ~30-40 dB on these small random nets
    assert report.stats["sqnr_db"] > 25


def _tiny_sftnet(seed=0):
    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=seed).eval()
    with torch.no_grad():
        model.HR_branch[-1].bias.add_(0.5)  # outputs mid-range, as an image's (nothing lost to the [0, 1] clamp)
    return model


def _sr_pairs(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = [torch.rand(1, 3, 64, 64, generator=g) for _ in range(n)]
    hr = [torch.nn.functional.avg_pool2d(h, 3, 1, 1) for h in hr]  # some spatial correlation
    lr = [torch.nn.functional.interpolate(h, scale_factor=0.25, mode="bicubic", align_corners=False).clamp(0, 1)
          for h in hr]
    return lr, hr


def test_sftnet_fused_int8_matches_its_plain_forward():
    lr, _ = _sr_pairs()
    plain = _tiny_sftnet()
    fused = copy.deepcopy(plain)
    sft_kernels.convert_(fused)
    assert fused.fused
    sft_kernels.quantize_(plain, calibration=lr, progress=False)
    sft_kernels.quantize_(fused, calibration=lr, progress=False)
    assert fused.fused and plain.fused  # int8 SFTNet runs the fused forward (modulation in the quantizing copy)
    plain.fused = False  # its module-by-module forward
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        a, b = plain(x), fused(x)
    assert _sqnr(b, a) > 35, _sqnr(b, a)  # same integer convs; the HR branch hands over uint8 (one rounding apart)


def test_sftnet_fused_int8_shares_one_uint8_condition_map_only_when_its_readers_agree(monkeypatch):
    """The fused int8 forward hands the condition network's output to the SFT layers as one uint8 map when all their
    first convs share input parameters (each layer then runs as one op); when one differs (changed here), the map
    stays float and each conv quantizes it with its own. Either way the fused forward matches the module-by-module
    one."""
    lr, _ = _sr_pairs()
    fused = _tiny_sftnet()
    sft_kernels.convert_(fused)
    sft_kernels.quantize_(fused, calibration=lr, progress=False)
    from sft_kernels.models.fused import _shared_int8_reader, sft_layers

    readers = [c for layer in sft_layers(fused) for c in (layer.SFT_scale_conv0, layer.SFT_shift_conv0)]
    assert _shared_int8_reader(readers) is readers[0]
    readers[-1].input_zero_point = (readers[-1].input_zero_point + 37) % 256
    readers[-1].input_scale *= 1.7
    assert _shared_int8_reader(readers) is None
    plain = copy.deepcopy(fused)
    plain.fused = False
    seen = {}
    for conv in (readers[0], readers[-1]):
        run = conv.run
        conv.run = lambda x, *a, _run=run, _c=conv, **k: seen.setdefault(id(_c), x.dtype) and _run(x, *a, **k)
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        a, b = plain(x), fused(x)
    assert seen == {id(readers[0]): torch.float32, id(readers[-1]): torch.float32}
    assert _sqnr(b, a) > 35, _sqnr(b, a)
    readers[-1].input_zero_point, readers[-1].input_scale = readers[0].input_zero_point, readers[0].input_scale
    seen.clear()
    # agreeing readers: each SFT layer runs as one op (ops.qsft_layer) on the uint8 map, its first convs inside it
    from sft_kernels.models import fused as fused_mod

    layer_op, conds = fused_mod.ops.qsft_layer, []
    monkeypatch.setattr(fused_mod.ops, "qsft_layer",
                        lambda x, cond, *a, **k: conds.append(cond.dtype) or layer_op(x, cond, *a, **k))
    with torch.no_grad():
        fused(x)
    assert seen == {} and conds == [torch.uint8] * len(sft_layers(fused))


def test_psnr_budget_sends_the_most_sensitive_layers_back():
    lr, _ = _sr_pairs()
    model = _tiny_sftnet()
    with torch.no_grad():  # targets the float model nearly meets (~54 dB): int8 noise then shows in the PSNR
        hr = [model(x) + 0.002 * torch.randn(model(x).shape, generator=torch.Generator().manual_seed(1)) for x in lr]
    full = copy.deepcopy(model)
    r0 = sft_kernels.quantize_(full, sft_kernels.Int8Config(observer="minmax"), calibration=lr, targets=hr,
                               progress=False)
    cfg = sft_kernels.Int8Config(observer="minmax", psnr_budget_db=0.01)
    r1 = sft_kernels.quantize_(model, cfg, calibration=lr, targets=hr, progress=False)
    st = r1.stats
    assert st["psnr_int8"] >= st["psnr_float"] - 0.01 or not r1.names("quantized")
    assert st["kept"], "the budget should have sent layers back to float"
    assert st["psnr_int8"] >= r0.stats["psnr_int8_all"]
    ranked = sorted(st["sensitivity_db"], key=st["sensitivity_db"].get, reverse=True)
    assert st["kept"] == ranked[:len(st["kept"])]  # most sensitive first
    for name in st["kept"]:
        assert isinstance(model.get_submodule(name), nn.Conv2d)
        row = next(r for r in r1.rows if r.name == name)
        assert row.action == "kept float" and "sensitive" in row.detail


def test_w8a16_fallback():
    lr, _ = _sr_pairs()
    model = _tiny_sftnet()
    with torch.no_grad():
        hr = [model(x) + 0.002 * torch.randn(model(x).shape, generator=torch.Generator().manual_seed(1)) for x in lr]
    rep = sft_kernels.quantize_(model, sft_kernels.Int8Config(psnr_budget_db=0.0, fallback="w8a16"), calibration=lr,
                                targets=hr, progress=False)
    kept = rep.stats["kept"]
    assert kept
    for name in kept:
        m = model.get_submodule(name)
        assert isinstance(m, QuantConv2d) and m.act_bits == 16
    with torch.no_grad():
        assert torch.isfinite(model(lr[0])).all()


def test_state_dict_round_trip_and_repr():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, padding=1)
    q = QuantConv2d.from_float(conv, 0.02, 17)
    q2 = QuantConv2d(8, 12, 3, padding=1)
    q2.load_state_dict(q.state_dict())
    assert (q2.input_scale, q2.input_zero_point) == (0.02, 17)
    assert torch.equal(q2.weight_int8, q.weight_int8)
    x = torch.rand(1, 8, 9, 9)
    torch.testing.assert_close(q2(x), q(x))
    assert "input_zero_point=17" in repr(q)
    # close to the float conv: per-channel weights, an 8-bit input step
    with torch.no_grad():
        assert _sqnr(q(x), conv(x)) > 30


def test_observers():
    gen = torch.Generator().manual_seed(0)
    x = torch.empty(100000).exponential_(generator=gen) - 0.3  # long-tailed and asymmetric, as SR activations
    errs = {}
    for kind in ("minmax", "percentile", "mse"):
        o = Observer(kind)
        o.observe(x[:50000])
        o.observe(x[50000:])
        scale, zp = o.qparams()
        assert scale > 0 and 0 <= zp <= 255
        errs[kind] = float(((fake_quantize(x, scale, zp) - x) ** 2).mean())
    assert errs["mse"] < errs["minmax"] and errs["mse"] <= errs["percentile"] * 1.01
    assert affine_qparams(0.5, 2.0)[1] == 0  # widened to hold 0
    assert affine_qparams(-1.0, -0.5)[1] == 255
    with pytest.raises(RuntimeError, match="saw no calibration data"):
        Observer("minmax").qparams()


def test_bad_inputs():
    model = _tiny_sftnet()
    with pytest.raises(ValueError, match="needs calibration inputs"):
        sft_kernels.quantize_(model, calibration=[])
    with pytest.raises(ValueError, match="pass targets="):
        sft_kernels.quantize_(model, sft_kernels.Int8Config(psnr_budget_db=0.1), calibration=[torch.rand(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="observer must be one of"):
        sft_kernels.Int8Config(observer="kl")
    with pytest.raises(ValueError, match="fallback must be"):
        sft_kernels.Int8Config(fallback="int4")
    with pytest.raises(ValueError, match="act_bits must be 8"):
        QuantConv2d(3, 4, 3, act_bits=4)


@pytest.mark.parametrize("out", ["float", "uint8"])
@pytest.mark.parametrize("r,c", [(2, 6), (2, 16), (3, 8)])  # uint8 runs of 12, 32, 24 bytes: bytes, then words
def test_quant_conv_pixel_shuffle_matches_shuffling_its_output(out, r, c):
    """QuantConv2d.run(..., pixel_shuffle=r) runs the conv with its channels in sub-pixel order and shuffles whole
    channel runs (as 8-byte words where a run is a multiple of 8 bytes): the same values as PyTorch's PixelShuffle
    of the plain output; the reordered weights follow an in-place change of the module's weights."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, r * r * c, 3, padding=1)
    q = QuantConv2d.from_float(conv, input_scale=0.02, input_zero_point=10)
    x = torch.rand(1, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    o = (0.05, 3) if out == "uint8" else (0.0, 0)
    with torch.no_grad():
        for _ in range(2):
            y = q.run(x, "relu", 0.01, None, None, *o, pixel_shuffle=r)
            ref = torch.nn.functional.pixel_shuffle(q.run(x, "relu", 0.01, None, None, *o).float(), r)
            assert y.shape == ref.shape and y.dtype == (torch.uint8 if out == "uint8" else torch.float32)
            assert y.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(y.float(), ref)
            q.weight_int8.mul_(-1)  # the cached reordered weights must follow


class SharedReLU(nn.Module):
    """One ReLU module called twice, and a conv whose output two layers read: neither folds."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.a(x)
        return self.relu(self.b(self.relu(y))) + self.bn(y)


class Untraceable(Bottleneck):
    def forward(self, x):
        if float(x.mean()) > 2:  # data-dependent: torch.fx cannot trace it
            x = -x
        return super().forward(x)


@pytest.mark.parametrize("make", [Bottleneck, Untraceable], ids=["traced", "sequential-neighbours"])
def test_batch_norms_and_activations_fold_into_int8_convs(make):
    """quantize_ folds each batch norm after a quantized conv into it (its int8 weights carry the scale) and makes
    a ReLU module after an int8 conv its epilogue, in place, keeping the model's forward; a conv kept float keeps
    its batch norm."""
    model = _trained_like(make())
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        ref = model(x)
    report = sft_kernels.quantize_(model, sft_kernels.Int8Config(keep_float=["proj.0"]),
                                   calibration=[torch.rand(2, 3, 24, 24)], progress=False)
    assert sorted(r.name for r in report.rows if r.action == "folded") == \
        ["a.1", "a.2", "a.4", "a.5", "a.7", "stem.1", "stem.2"]
    assert all(type(model.get_submodule(n)) is nn.Identity for n in ("stem.1", "stem.2", "a.1", "a.7"))
    assert isinstance(model.proj[1], nn.BatchNorm2d)  # after the float conv
    assert (model.stem[0].activation, model.a[3].activation, model.a[6].activation) == ("relu", "relu", None)
    with torch.no_grad():
        assert _sqnr(model(x), ref) > 25


def test_shared_modules_do_not_fold():
    model = _trained_like(SharedReLU())
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
    report = sft_kernels.quantize_(model, calibration=[x], progress=False)
    assert not [r for r in report.rows if r.action == "folded"]
    assert isinstance(model.relu, nn.ReLU) and isinstance(model.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert _sqnr(model(x), ref) > 25


def test_fused_separable_pairs_quantize():
    """convert_'s fused depthwise + 1×1 pairs are split for quantize_ (each conv quantized on its own), and a
    fuse_for_inference graph's SeparableConv2d runs its int8 convs one by one."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 20, 18)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
                      nn.Conv2d(16, 8, 1)).eval()
    with torch.no_grad():
        ref = m(x)
    sft_kernels.convert_(m)
    assert type(m[1]).__name__ == "SeparableHead"
    report = sft_kernels.quantize_(m, calibration=[x], progress=False)
    assert [r.name for r in report.rows if r.action == "note"] == ["1"]
    assert all(isinstance(m[i], QuantConv2d) for i in (0, 1, 3)) and m[1].activation == "relu6"
    with torch.no_grad():
        assert _sqnr(m(x), ref) > 25

    model = _trained_like(MobileNetV2Like())
    with torch.no_grad():
        ref = model(x)
    gm = sft_kernels.fuse_for_inference(model, x)
    assert gm.fusion_report[1]["separable"] > 0
    sft_kernels.quantize_(gm, calibration=[x], progress=False)
    seps = [s for s in gm.modules() if isinstance(s, sft_kernels.nn.SeparableConv2d)]
    assert seps and all(isinstance(s.dw, QuantConv2d) and isinstance(s.pw, QuantConv2d) for s in seps)
    with torch.no_grad():
        assert _sqnr(gm(x), ref) > 25


def test_int8_convs_hand_uint8_to_the_one_int8_conv_reading_them():
    """quantize_ makes an int8 conv whose output only another int8 conv reads (through folded-away batch norms and
    activations) return uint8 with that conv's input parameters; the result matches the float hand-over to within
    requantization, and a conv whose output two layers read keeps float."""
    model = _trained_like(MobileNetV2Like())
    x = torch.rand(2, 3, 20, 28)
    report = sft_kernels.quantize_(model, calibration=[torch.rand(2, 3, 24, 24) for _ in range(3)], progress=False)
    chained = {r.name: r.detail for r in report.rows if r.action == "chained"}
    assert chained == {"b1.0": "uint8 output for b1.3", "b1.3": "uint8 output for b1.6",
                       "b2.0": "uint8 output for b2.3", "b2.3": "uint8 output for b2.6"}, chained
    assert model.b1[0].out_scale == model.b1[3].input_scale and model.stem[0].out_scale == 0  # stem: read twice
    with torch.no_grad():
        assert model.b1[0](torch.rand(1, 16, 6, 6)).dtype == torch.uint8
        y = model(x)
        for name in chained:
            model.get_submodule(name).out_scale = 0.0
        assert _sqnr(y, model(x)) > 35


def test_a_conv_the_forward_never_calls_stays_float():
    """quantize_ and prepare_qat_ keep a conv the calibration forward never reached float, with a report row (it had
    raised 'this layer saw no calibration data' without naming it)."""

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.unused = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

        def forward(self, x):
            return self.a(x)

    x = torch.rand(1, 3, 12, 12)
    for transform in (sft_kernels.quantize_, sft_kernels.prepare_qat_):
        model = Unused().eval()
        report = transform(model, sft_kernels.Int8Config(), calibration=[x], progress=False) \
            if transform is sft_kernels.quantize_ else transform(model, sft_kernels.Int8Config(), calibration=[x])
        rows = [(r.name, r.action, r.detail) for r in report.rows]
        assert ("unused", "skipped", "never called by the calibration forward: kept float") in rows, rows
        assert isinstance(model.unused, nn.Conv2d) and model(x).shape == (1, 8, 12, 12)  # float (quantize_: ours)


def test_one_tensor_is_one_calibration_batch():
    """calibration=x (a 4-D tensor, not a list of batches) calibrates on x as one batch; targets=y likewise."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.rand(4, 3, 12, 10)
    with torch.no_grad():
        ref = model(x)
    report = sft_kernels.quantize_(model, sft_kernels.Int8Config(psnr_budget_db=1.0), calibration=x, targets=ref,
                                   progress=False)
    assert report.stats["sqnr_db"] > 30 and isinstance(model[0], QuantConv2d)
    assert report.stats["psnr_float"] - report.stats["psnr_int8"] <= 1.0


def test_a_conv_reading_a_map_as_input_and_residual_keeps_it_float():
    """After fuse_for_inference, h = a(x); y = b(h) + h becomes b(a, residual=a): a's output is read once in the graph
    but twice by b, as input and residual, so it stays float (a uint8 map had reached b's residual)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 14, 11)
    model = ResidualConvs().eval()
    with torch.no_grad():
        ref = model(x)
    gm = sft_kernels.fuse_for_inference(model, x)
    report = sft_kernels.quantize_(gm, calibration=[x], progress=False)
    assert {r.name for r in report.rows if r.action == "chained"} == {"b"} and gm.a.out_scale == 0
    with torch.no_grad():
        assert _sqnr(gm(x), ref) > 25


class TwoBottlenecks(nn.Module):
    """A projection bottleneck then an identity one, ReLU after each residual add (a function, then a module)."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4 * c, 3, 1, 1), nn.BatchNorm2d(4 * c), nn.ReLU())

        def branch(cin, stride):
            return nn.Sequential(nn.Conv2d(cin, c, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, stride, 1),
                                 nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 4 * c, 1), nn.BatchNorm2d(4 * c))

        self.a, self.b = branch(4 * c, 2), branch(4 * c, 1)
        self.proj = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 1, 2), nn.BatchNorm2d(4 * c))
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * c, 10)

    def forward(self, x):
        s = self.stem(x)
        y = torch.relu(self.a(s) + self.proj(s))
        y = self.relu(self.b(y) + y)
        return self.fc(y.mean((2, 3)))


def test_residual_blocks_hand_uint8_to_every_int8_reader(monkeypatch, tmp_path):
    """After fuse_for_inference, a map read by several int8 convs, as input or as residual, is handed over uint8:
    the stem's by both branches of the first block, the first block's (its ReLU after the residual add dropped, the
    readers' zero point being 0) by the second block's first conv and, dequantized with residual_quant, by its last
    conv; the second block's stays float (a mean reads it). Close to the float model and to the same model with
    float hand-overs; the grids survive a state_dict; the QDQ ONNX export matches in onnxruntime."""
    from sft_kernels.transforms import fold

    torch.manual_seed(0)
    model = _trained_like(TwoBottlenecks())
    calib, x = [torch.rand(2, 3, 24, 24) for _ in range(3)], torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        ref = model(x)

    def quantized(chain=True):
        gm = sft_kernels.fuse_for_inference(copy.deepcopy(model), calib[0])
        if not chain:
            monkeypatch.setattr(fold, "chain_int8_", lambda m: [])
        report = sft_kernels.quantize_(gm, calibration=calib, progress=False)
        monkeypatch.undo()
        return gm, report

    gm, report = quantized()
    chained = {r.name: r.detail for r in report.rows if r.action == "chained"}
    assert chained["stem.0"] == "uint8 output for a.0, proj.0", chained
    assert chained["a.6"] == "uint8 output for b.0, b.6", chained
    # the first ReLU after an add is absorbed; the last one, which the mean reads, stays
    relus = [n for n in gm.graph.nodes if n.target in (torch.relu, "relu")]
    assert [n.args[0].target for n in relus] == ["b.6"], [n.format_node() for n in relus]
    a6, b0, b6 = (gm.get_submodule(n) for n in ("a.6", "b.0", "b.6"))
    assert b6.residual_quant == (a6.out_scale, 0) and a6.out_zero_point == 0 and b0.input_scale == a6.out_scale
    float_hand, _ = quantized(chain=False)
    with torch.no_grad():
        y = gm(x)
        assert _sqnr(y, ref) > 25
        assert _sqnr(y, float_hand(x)) > 35
    again, _ = quantized(chain=False)
    again.load_state_dict(gm.state_dict())
    assert again.get_submodule("b.6").residual_quant == b6.residual_quant
    assert again.get_submodule("a.6").out_scale == a6.out_scale
    with torch.no_grad():
        assert torch.equal(again(x), y)
    sft_kernels.export_onnx(gm, x, str(tmp_path / "chained.onnx"))  # QDQ: checked in onnxruntime against gm (the
    # dropped ReLU is the uint8 output grid's clamp there too)
    plain = _trained_like(TwoBottlenecks())  # its own forward: the adds stay float, and the report says what to do
    report = sft_kernels.quantize_(plain, calibration=calib, progress=False)
    notes = [r.detail for r in report.rows if r.action == "note"]
    assert any(n.startswith("3 int8 conv output(s) meet an add") and "fuse_for_inference" in n for n in notes), notes
    with pytest.raises(ValueError, match="uint8 residual needs residual_quant"):
        QuantConv2d.from_float(nn.Conv2d(4, 4, 1))(torch.rand(1, 4, 3, 3),
                                                  residual=torch.zeros(1, 4, 3, 3, dtype=torch.uint8))


class PooledStem(nn.Module):
    """A ResNet-style stem (conv, batch norm, ReLU, max pool) read by two convs."""

    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        s = self.stem(x)
        return self.a(s) + self.b(s)


def test_a_max_pool_between_int8_convs_pools_uint8(monkeypatch, tmp_path):
    """The stem's output reaches its two readers through a max pool: it goes over as uint8 and the pool becomes
    sft_kernels.nn.MaxPool2d, which pools the bytes (in the model's own forward: no tracing needed); the result
    equals the float hand-over's up to requantization."""
    from sft_kernels.nn import MaxPool2d
    from sft_kernels.transforms import fold

    torch.manual_seed(0)
    model = _trained_like(PooledStem())
    calib, x = [torch.rand(2, 3, 32, 32) for _ in range(3)], torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        ref = model(x)
    floats = copy.deepcopy(model)
    monkeypatch.setattr(fold, "chain_int8_", lambda m: [])
    sft_kernels.quantize_(floats, calibration=calib, progress=False)
    monkeypatch.undo()
    report = sft_kernels.quantize_(model, calibration=calib, progress=False)
    assert {r.name: r.detail for r in report.rows if r.action == "chained"} == {"stem.0": "uint8 output for a, b"}
    assert type(model.stem[3]) is MaxPool2d and type(floats.stem[3]) is nn.MaxPool2d
    with torch.no_grad():
        assert model.stem(x).dtype == torch.uint8
        y = model(x)
        assert _sqnr(y, ref) > 25 and _sqnr(y, floats(x)) > 35
    sft_kernels.export_onnx(model, x, str(tmp_path / "pooled.onnx"))  # checked in onnxruntime against the model


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_uint8_max_pool_equals_the_float_pool(layout):
    from sft_kernels.nn import MaxPool2d

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 12, 13, 11), dtype=torch.uint8, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for k, st, pd, dl, ceil in ((3, 2, 1, 1, False), (2, 2, 0, 1, True), (3, 1, 1, 2, False), (5, 3, 2, 1, True)):
        pool = MaxPool2d.from_pool(nn.MaxPool2d(k, st, pd, dl, ceil_mode=ceil))
        y = pool(x)
        assert y.dtype == torch.uint8
        assert torch.equal(y.float(), F.max_pool2d(x.float(), k, st, pd, dl, ceil_mode=ceil)), (k, st, pd, dl, ceil)
        xf = x.float() / 7
        assert torch.equal(pool(xf), F.max_pool2d(xf, k, st, pd, dl, ceil_mode=ceil))  # float: nn.MaxPool2d's


def test_maps_whose_readers_disagree_stay_float(monkeypatch):
    """No uint8 hand-over where the readers' input grids differ, and the ReLU after an add stays where their zero
    point is not 0 (its clamp would not be the requantization's)."""
    from sft_kernels.transforms import fold

    torch.manual_seed(0)
    calib = [torch.rand(2, 3, 24, 24) for _ in range(2)]
    gm = sft_kernels.fuse_for_inference(_trained_like(TwoBottlenecks()), calib[0])
    monkeypatch.setattr(fold, "chain_int8_", lambda m: [])
    sft_kernels.quantize_(gm, calibration=calib, progress=False)
    monkeypatch.undo()
    gm.get_submodule("proj.0").input_scale *= 1.5
    gm.get_submodule("b.0").input_zero_point = 3
    chained = dict(fold.chain_int8_(gm))
    assert "stem.0" not in chained and "a.6" not in chained and "a.0" in chained, chained
    assert gm.get_submodule("a.6").out_scale == 0 and gm.get_submodule("b.6").residual_quant is None
    assert sum(n.target is torch.relu for n in gm.graph.nodes) == 1  # the one after the first add


@pytest.mark.parametrize("cin,cout,groups", [(16, 24, 1), (24, 24, 6)])
def test_quantconv_bound_kernel_follows_every_change(cin, cout, groups):
    """QuantConv2d keeps the cpu kernel's call bound for its last signature (past the op's checks and dispatch):
    repeated calls, in-place weight and bias updates, a new output grid, residuals on and off, NCHW input and
    another backend all give what the op path gives; dense and grouped convs (the kernel over whole groups)."""
    from sft_kernels.ops.qconv2d import cpu as qcpu
    from sft_kernels.ops.qconv2d import reference as qref

    if groups > 1 and not torch.ops.sft_cpu.qconv2d_grouped_fits(cin, cout, groups):
        pytest.skip("the kernel over whole groups runs on VNNI / AMX int8 kernels only")
    torch.manual_seed(0)
    q = QuantConv2d.from_float(nn.Conv2d(cin, cout, 3, padding=1, groups=groups), input_scale=0.02, input_zero_point=5)
    assert qcpu.bound(q.weight_int8, q.weight_scale, q.bias, 0.02, 5, (1, 1), (1, 1), (1, 1), groups, None, 0.01,
                      0.0, 0) is not None
    x = torch.rand(1, cin, 9, 11).contiguous(memory_format=torch.channels_last)
    res = torch.randn(1, cout, 9, 11)

    def expected(residual=None, out=(0.0, 0)):
        return qref.qconv2d(x, 0.02, 5, q.weight_int8, q.weight_scale, q.bias, residual, 1, 1, 1, groups, None, 0.01,
                            *out)

    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
        assert q.__dict__.get("_fast") is not None and q.__dict__["_fast"][1] is not None
        q.weight_int8[0].neg_()
        q.bias.add_(1.0)
        torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
        torch.testing.assert_close(q(x, residual=res).double(), expected(res), **tol("int8_epilogue"))
        torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
        q.out_scale, q.out_zero_point = 0.05, 60
        y = q(x)
        assert y.dtype == torch.uint8 and (y.int() - expected(out=(0.05, 60)).int()).abs().max() <= 1
        q.out_scale = 0.0
        xn = x.contiguous()
        torch.testing.assert_close(q(xn).double(), expected(), **tol("int8_epilogue"))
        q.backend = "reference"
        torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
        assert q.__dict__["_fast"][1] is None  # another backend: the op path every call
        q.backend = None
        q(x)
        c = copy.deepcopy(q)  # the copy's buffers are new tensors: its own weights, whatever their versions say
        c.weight_int8.copy_(torch.randint(-127, 128, c.weight_int8.shape, dtype=torch.int8))
        while c.weight_int8._version < q.weight_int8._version:  # even where the version counters meet again
            c.weight_int8.add_(0)
        assert c.weight_int8._version == q.weight_int8._version
        e = qref.qconv2d(x, 0.02, 5, c.weight_int8, c.weight_scale, c.bias, None, 1, 1, 1, groups)
        torch.testing.assert_close(c(x).double(), e, **tol("int8_epilogue"))
        dw = QuantConv2d.from_float(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin), input_scale=0.02, input_zero_point=5)
        e = qref.qconv2d(x, 0.02, 5, dw.weight_int8, dw.weight_scale, dw.bias, None, 2, 1, 1, cin)
        for _ in range(2):  # depthwise: its own kernel, bound the same way
            torch.testing.assert_close(dw(x).double(), e, **tol("int8_epilogue"))
        assert dw.__dict__["_fast"][1] is not None


def test_quant_linear_matches_the_integer_reference_and_the_float_layer():
    """QuantLinear (sft.qconv2d's 1×1 conv over one-pixel rows): equal to the integer reference on the same bytes,
    close to the float Linear, any leading dims; W8A16; its state round-trips; a wrong feature count says so."""
    from sft_kernels.ops.qconv2d import reference as qref

    torch.manual_seed(0)
    lin = nn.Linear(96, 37)
    x = torch.randn(2, 5, 96)
    q = QuantLinear.from_float(lin, input_scale=0.03, input_zero_point=128)
    y = q(x)
    assert y.shape == (2, 5, 37) and y.dtype == torch.float32
    e = qref.qconv2d(x.reshape(10, 96, 1, 1), 0.03, 128, q.weight_int8, q.weight_scale, q.bias).view(2, 5, 37)
    torch.testing.assert_close(y.double(), e, **tol("int8_epilogue"))
    assert _sqnr(y, lin(x).detach()) > 30
    w16 = QuantLinear.from_float(lin, 0.03, 128, act_bits=16)
    torch.testing.assert_close(w16(x), torch.nn.functional.linear(x, q.dequantized_weight(), lin.bias.detach()))
    again = QuantLinear(96, 37)
    again.load_state_dict(q.state_dict())
    assert again.input_scale == 0.03 and again.input_zero_point == 128 and torch.equal(again(x), y)
    with pytest.raises(ValueError, match="got an input with 95 features"):
        q(torch.randn(3, 95))


@pytest.mark.parametrize("shape", [(1, 6, 7, 96), (13, 96), (1, 96), (96,), (0, 96), (2, 0, 96)])
def test_quant_linear_runs_its_rows_as_one_image(shape, monkeypatch):
    """The rows go to the kernel as the pixels of one channels_last image (as one-pixel images the kernel ran image
    by image, 6x slower on ConvNeXt's MLPs), for any row count (13: a prime), also an NHWC view like ConvNeXt's
    permuted map; the result is the integer reference's."""
    from sft_kernels.ops.qconv2d import reference as qref

    torch.manual_seed(1)
    lin = nn.Linear(96, 40)
    q = QuantLinear.from_float(lin, input_scale=0.03, input_zero_point=100)
    x = torch.randn(shape)
    if len(shape) == 4:  # ConvNeXt: an NCHW map permuted to NHWC, not contiguous
        x = torch.randn(shape[0], shape[3], shape[1], shape[2]).permute(0, 2, 3, 1)
    seen = []
    qconv2d = sft_kernels.ops.qconv2d

    def spy(inp, *args, **kwargs):
        seen.append(tuple(inp.shape))
        return qconv2d(inp, *args, **kwargs)

    monkeypatch.setattr(sft_kernels.ops, "qconv2d", spy)
    y = q(x)
    rows = x.numel() // 96
    assert y.shape == (*x.shape[:-1], 40) and y.is_contiguous()
    assert seen[0][0] == (1 if rows else 0) and seen[0][2] * seen[0][3] == max(rows, 1), seen
    e = qref.qconv2d(x.reshape(-1, 96, 1, 1), 0.03, 100, q.weight_int8, q.weight_scale, q.bias)
    torch.testing.assert_close(y.double(), e.view(*x.shape[:-1], 40), **tol("int8_epilogue"))


@pytest.mark.skipif("cpu" not in op_backends("qconv2d", torch.uint8), reason="cpu backend not built")
def test_quant_linear_keeps_its_kernel_call_bound():
    """After a first call QuantLinear calls the cpu kernel directly for inputs of the same signature; a weight changed
    in place or a new input scale makes it bind again, and results stay the integer reference's."""
    from sft_kernels.ops.qconv2d import reference as qref

    torch.manual_seed(2)
    q = QuantLinear.from_float(nn.Linear(64, 48), input_scale=0.03, input_zero_point=100)
    x = torch.randn(2, 5, 64)

    def expected():
        return qref.qconv2d(x.reshape(-1, 64, 1, 1), q.input_scale, q.input_zero_point, q.weight_int8,
                            q.weight_scale, q.bias).view(2, 5, 48)

    for _ in range(2):
        torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
    assert q.__dict__["_fast"][1] is not None
    with torch.no_grad():
        q.weight_int8[0, :3] = 5
    torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))
    q.input_scale = 0.05
    assert q.__dict__["_fast"] is None
    torch.testing.assert_close(q(x).double(), expected(), **tol("int8_epilogue"))


def test_quantize_makes_linear_heads_int8_unless_told_not_to():
    model = _trained_like(Bottleneck())
    calib = [torch.rand(2, 3, 24, 24) for _ in range(3)]
    kept = copy.deepcopy(model)
    sft_kernels.quantize_(model, calibration=calib, progress=False)
    assert isinstance(model.fc, QuantLinear) and model.fc.act_bits == 8
    report = sft_kernels.quantize_(kept, sft_kernels.Int8Config(linear=False), calibration=calib, progress=False)
    assert type(kept.fc) in (nn.Linear, sft_kernels.nn.Linear)  # (float, converted as the convs are)
    assert any(r.name == "fc" and "linear=False" in r.detail for r in report.rows), [str(r) for r in report.rows]


def test_quantized_linear_head_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    model = _trained_like(Bottleneck())
    sft_kernels.quantize_(model, calibration=[torch.rand(2, 3, 24, 24) for _ in range(3)], progress=False)
    sft_kernels.export_onnx(model, torch.rand(1, 3, 24, 24), tmp_path / "m.onnx")  # checked in onnxruntime


def test_a_linear_its_owner_reads_directly_stays_float():
    """nn.MultiheadAttention reads out_proj.weight itself (its forward is never called): quantize_ leaves it float,
    so the attention still runs."""

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2)
            return self.fc(self.mha(t, t, t, need_weights=False)[0].mean(1))

    torch.manual_seed(0)
    model = Attn().eval()
    x = torch.rand(1, 3, 8, 8)
    ref = model(x).detach()
    report = sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 8, 8) for _ in range(2)], progress=False)
    assert type(model.mha.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert isinstance(model.fc, QuantLinear) and isinstance(model.conv, QuantConv2d)
    assert any(r.name == "mha.out_proj" and "never called" in r.detail for r in report.rows)
    with torch.no_grad():
        assert _sqnr(model(x), ref) > 25


@pytest.mark.parametrize("transform", ["channels", "factorize", "separable"])
def test_int8_checkpoints_of_transformed_sftnets_load(transform, tmp_path):
    """save_int8 / load_int8 of a channel-pruned, factorized or separable SFTNet quantized afterwards (what
    `sft-kernels quantize --model teacher-half` writes): the loader rebuilds the structure from the int8 weights'
    shapes (it had built the full-width plain model and failed) and computes what was saved."""
    from sft_kernels.models.int8 import load_int8, save_int8

    torch.manual_seed(0)
    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0).eval()
    if transform == "channels":
        sft_kernels.prune_(model, sft_kernels.PruneConfig(pattern="channel", sparsity=0.5))
    elif transform == "factorize":
        sft_kernels.factorize_(model, sft_kernels.SVDConfig(rank=4), progress=False)
    else:
        sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=2), progress=False)
    sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 12, 12)], progress=False)
    path = save_int8(model, tmp_path / "q", {"name": "q"})
    loaded = load_int8(json.loads(path.with_suffix(".json").read_text()), path)
    x = torch.rand(1, 3, 10, 13)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), **tol("exact"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_an_int8_model_follows_a_dtype_cast(dtype):
    """model.to(dtype) keeps the int8 layers' scales and bias float32 (the cast had made the kernels refuse them);
    an int8 conv given a float input of another dtype hands its float output back in that dtype."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1)).eval()
    x = torch.rand(2, 3, 8, 8)
    sft_kernels.quantize_(model, calibration=[x], progress=False)
    with torch.no_grad():
        want = model(x)
        model.to(dtype)
        assert model[0].weight_scale.dtype == torch.float32
        y = model(x.to(dtype))
    assert y.dtype in (dtype, torch.float32) and (y.float() - want).abs().max() < 0.02
    with torch.no_grad():
        assert model[2](torch.rand(1, 16, 5, 5, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("act_bits", [8, 16])
def test_quantconv_shuffled_residual_is_shaped_like_the_output(act_bits):
    """QuantConv2d.run(pixel_shuffle=r, residual=...) takes the residual shaped like its shuffled output, as
    sft.conv2d and SparseConv2d do, on the int8 path and the W8A16 one."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 32, 3, padding=1)
    x, res = torch.rand(1, 8, 6, 7), torch.randn(1, 8, 12, 14)
    q = QuantConv2d.from_float(conv, 0.01, 0, act_bits)
    with torch.no_grad():
        want = F.pixel_shuffle(torch.relu(conv(x)), 2) + res
        y = q.run(x, "relu", residual=res, pixel_shuffle=2)
    assert y.shape == want.shape and (y - want).abs().max() < 0.02


def test_quantize_scores_models_with_dict_or_tuple_outputs():
    """quantize_'s SQNR (and the budget's scans) read every floating tensor of a dict / tuple output."""
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            f = torch.relu(self.c1(x))
            return {"a": self.c2(f), "rest": (self.c3(f), torch.zeros(1, dtype=torch.long))}

    torch.manual_seed(0)
    model = TwoHeads().eval()
    report = sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 12, 12) for _ in range(2)], progress=False)
    assert report.stats["sqnr_db"] > 25 and len(sft_kernels.transforms.quantize.quantized_layers(model)) == 3


def test_int8_layers_keep_no_input_alive():
    """Nothing global holds an int8 layer's inputs (or the layer) after a call: a memo keyed on them would keep every
    activation map a model ever saw."""
    import gc
    import weakref

    torch.manual_seed(0)
    q = QuantConv2d.from_float(nn.Conv2d(8, 8, 3, padding=1), input_scale=0.02, input_zero_point=5)
    lin = QuantLinear.from_float(nn.Linear(8, 4), input_scale=0.02, input_zero_point=5)
    refs = []
    with torch.no_grad():
        for _ in range(3):
            x, rows = torch.rand(1, 8, 6, 6).contiguous(memory_format=torch.channels_last), torch.rand(40, 8)
            q(x), lin(rows)
            refs += [weakref.ref(x), weakref.ref(rows)]
            del x, rows
    ql = weakref.ref(q)
    del q, lin
    gc.collect()
    assert all(r() is None for r in refs) and ql() is None
