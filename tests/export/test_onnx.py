"""export_onnx: float, converted (fused SFTNet forward, fused separable pairs) and int8 (QDQ, int8 weight
initializers) models run in onnxruntime and match the model within the tolerance table; dynamic batch and size."""
import copy
import io
import warnings

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.models import SFTNet
from sft_kernels.testing import tol
from tests.transforms.test_quantize import EDSRLike

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def _sftnet():
    return SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0).eval()


@pytest.mark.parametrize("kind", ["float", "converted", "int8"])
def test_sftnet_export_runs_in_onnxruntime(kind, tmp_path):
    model = _sftnet()
    if kind != "float":
        sft_kernels.convert_(model)
    if kind == "int8":
        sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 16, 16) for _ in range(2)], progress=False)
    x = torch.rand(1, 3, 12, 16)
    path = sft_kernels.export_onnx(model, x, tmp_path / f"{kind}.onnx")  # check=True: already compared once
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "DepthToSpace" in ops and "Conv" in ops
    if kind == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        inits = onnx.load(str(path)).graph.initializer
        n_convs = sum(isinstance(m, sft_kernels.nn.QuantConv2d) for m in model.modules())
        assert sum(i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4 for i in inits) == n_convs  # weights
    x2 = torch.rand(2, 3, 9, 11)  # another batch and size: dynamic axes
    with torch.no_grad():
        want = model(x2)
    got = _run(path, x2)
    torch.testing.assert_close(got, want, **tol("onnx_int8" if kind == "int8" else "onnx_fp32"))


def test_int8_edsr_like_and_separable_export(tmp_path):
    model = EDSRLike().eval()
    sft_kernels.quantize_(model, calibration=[torch.rand(1, 3, 16, 16)], progress=False)
    sft_kernels.export_onnx(model, torch.rand(1, 3, 10, 10), tmp_path / "edsr.onnx")
    sep = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 16, 1)).eval()
    conv = copy.deepcopy(sep)
    report = sft_kernels.convert_(conv)
    assert report.names("fused")  # the pair runs as one fused separable conv ...
    sft_kernels.export_onnx(conv, torch.rand(1, 8, 9, 9), tmp_path / "sep.onnx")  # ... and exports as two Convs


def test_export_check_catches_a_mismatch(tmp_path):
    model = _sftnet()
    x = torch.rand(1, 3, 8, 8)
    path = sft_kernels.export_onnx(model, x, tmp_path / "m.onnx")
    from sft_kernels.export.onnx import check_onnx
    with torch.no_grad():
        model.conv0.bias.add_(1.0)
    with pytest.raises(RuntimeError, match="differs from the model's"):
        check_onnx(model, (x,), path, 1e-4)


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.c, self.d = nn.Conv2d(16, 16, 1), nn.Conv2d(16, 3, 3, padding=1)
        self.e = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.nn.functional.leaky_relu(self.c(torch.nn.functional.relu6(self.b(h))), 0.2)
        return self.d(self.e(h) + h)


@pytest.mark.parametrize("kind", ["fused", "separable", "pruned", "block-pruned converted", "factorized converted"])
def test_transformed_models_export_and_revert_to_the_same_function(kind, tmp_path):
    """fuse_for_inference graphs (activations and a residual folded into the convs, a fused separable pair),
    to_separable_, prune_ and factorize_ models export and match in onnxruntime; revert_ keeps their function
    (a fused conv's activation and residual had been dropped, and these modules had failed to export)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 11, 9)
    model = _Res().eval()
    if kind == "fused":
        model = sft_kernels.fuse_for_inference(model, x)
        assert "residual" in model.code
    elif kind == "separable":
        sft_kernels.to_separable_(model, sft_kernels.SeparableConfig(multiplier=2), progress=False)
    elif kind.endswith("pruned") or kind.endswith("pruned converted"):
        sft_kernels.prune_(model, sft_kernels.PruneConfig(sparsity=0.5, pattern="block" if "block" in kind else
                                                           "unstructured"))
    else:
        sft_kernels.factorize_(model, sft_kernels.SVDConfig(rank=3), progress=False)
    if kind.endswith("converted"):
        sft_kernels.convert_(model)
    with torch.no_grad():
        want = model(x)
    path = sft_kernels.export_onnx(model, x, tmp_path / "m.onnx")
    torch.testing.assert_close(_run(path, x), want, **tol("onnx_fp32"))
    reverted = copy.deepcopy(model)
    sft_kernels.revert_(reverted)
    with torch.no_grad():
        torch.testing.assert_close(reverted(x), want, **tol("fp32"))


def test_export_to_a_file_object():
    """Like torch.onnx.export, a binary file object takes the bytes (built and checked in a temporary file); an int8
    model's weight folding happens there too."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    x = torch.rand(1, 3, 9, 9)
    sft_kernels.quantize_(model, calibration=[x], progress=False)
    buf = io.BytesIO()
    assert sft_kernels.export_onnx(model, x, buf) is buf
    graph = onnx.load_from_string(buf.getvalue()).graph
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)
    sess = ort.InferenceSession(buf.getvalue())
    with torch.no_grad():
        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
        assert (got - model(x)).abs().max() < tol("onnx_int8")["atol"]


def test_a_float64_model_exports_in_float32(tmp_path):
    """onnxruntime has no float64 Conv on the CPU: the file holds the float32 model, checked against the float64
    one (the file had failed to load in onnxruntime)."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).double().eval()
    x = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    path = sft_kernels.export_onnx(model, x, tmp_path / "d.onnx")
    with torch.no_grad():
        torch.testing.assert_close(_run(path, x.float()), model(x).float(), **tol("onnx_fp32"))
    assert model[0].weight.dtype == torch.float64


def test_a_model_in_train_mode_exports_as_in_eval_mode_and_is_left_alone(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(),
                          nn.Conv2d(8, 3, 3, padding=1))
    stats = model[1].running_mean.clone()
    x = torch.rand(2, 3, 9, 9)
    path = sft_kernels.export_onnx(model, x, tmp_path / "t.onnx")
    assert model.training and torch.equal(model[1].running_mean, stats)
    with torch.no_grad():
        torch.testing.assert_close(_run(path, x), copy.deepcopy(model).eval()(x), **tol("onnx_fp32"))


class _PooledHead(nn.Module):
    """A VGG-style head: adaptive average pooling to 2×2 (not 1×1), flattened into a Linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d((2, 2)), nn.Linear(32, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def test_sizes_the_exporter_cannot_keep_dynamic_are_fixed_with_a_warning(tmp_path):
    """torch.onnx cannot export adaptive pooling to 2×2 with a symbolic input size (a VGG's head): by default the
    height and width are fixed to the example's, with a warning; dynamic_size=True raises; False fixes them
    silently. A model without such an op keeps them dynamic."""
    import onnx

    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 10)
    quantized = _PooledHead().eval()
    sft_kernels.quantize_(quantized, calibration=[x], progress=False)
    for model in (_PooledHead().eval(), quantized):
        with pytest.warns(UserWarning, match="height and width fixed to the example's"):
            sft_kernels.export_onnx(model, x, tmp_path / "head.onnx")
        dims = onnx.load(str(tmp_path / "head.onnx")).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims[2:]] == [12, 10] and dims[0].dim_param == "batch"
        with pytest.raises(Exception, match="size"):
            sft_kernels.export_onnx(model, x, tmp_path / "head.onnx", dynamic_size=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="export_onnx: height and width fixed")
        sft_kernels.export_onnx(_PooledHead().eval(), x, tmp_path / "head.onnx", dynamic_size=False)
        sft_kernels.export_onnx(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), x, tmp_path / "conv.onnx")
    dims = onnx.load(str(tmp_path / "conv.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]


def test_silu_and_hardswish_convs_export_float_and_int8(tmp_path):
    """Convs with SiLU / hardswish epilogues (and a separable pair with both) export as standard ops (float) and QDQ
    (int8); export_onnx checks each in onnxruntime against the model."""
    from tests.transforms.test_fuse import SiluBlock

    torch.manual_seed(0)
    model, x = SiluBlock().eval(), torch.randn(1, 3, 20, 18)
    fused = sft_kernels.fuse_for_inference(copy.deepcopy(model), x)
    sft_kernels.export_onnx(fused, x, tmp_path / "f.onnx")
    q = sft_kernels.fuse_for_inference(copy.deepcopy(model), x)
    sft_kernels.quantize_(q, calibration=[torch.randn(1, 3, 20, 18) for _ in range(3)], progress=False)
    sft_kernels.export_onnx(q, x, tmp_path / "q.onnx")
    s = ort.InferenceSession(str(tmp_path / "q.onnx"))
    with torch.no_grad():
        ref, yq = model(x), q(x)
    y = torch.from_numpy(s.run(None, {s.get_inputs()[0].name: x.numpy()})[0])
    torch.testing.assert_close(y, yq, atol=1e-4, rtol=1e-4)
    assert 10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum()) > 30


class _SegLike(nn.Module):
    """A segmentation-style model: a dict of outputs ({"out", "aux"}, as torchvision's FCN / DeepLab return)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU())
        self.head, self.aux = nn.Conv2d(16, 4, 1), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        f = self.body(x)
        return {"out": self.head(f), "aux": self.aux(f)}


def test_dict_output_models_quantize_export_and_check(tmp_path):
    """A model returning a dict: quantize_ scores its outputs together (SQNR), export_onnx checks each output in
    onnxruntime, in order, and a mismatch in either is caught."""
    torch.manual_seed(0)
    model = _SegLike().eval()
    x = torch.randn(1, 3, 20, 24)
    c = copy.deepcopy(model)
    sft_kernels.convert_(c)
    sft_kernels.export_onnx(c, x, tmp_path / "f.onnx")
    report = sft_kernels.quantize_(c, calibration=[torch.randn(1, 3, 20, 24) for _ in range(2)], progress=False)
    assert report.stats["sqnr_db"] > tol("int8_sqnr_db")["atol"]
    path = sft_kernels.export_onnx(c, x, tmp_path / "q.onnx")
    from sft_kernels.export.onnx import check_onnx
    with torch.no_grad():
        c.aux.bias.add_(1.0)  # the second output only
    with pytest.raises(RuntimeError, match="differs from the model's"):
        check_onnx(c, (x,), path, 1e-2)


def test_int8_check_accepts_compounded_rounding_by_sqnr(tmp_path):
    """The int8 check's second criterion: an export whose outputs are off by more than atol passes only at
    min_sqnr_db or above (SQNR against the model's outputs)."""
    from sft_kernels.export.onnx import check_onnx
    model = _sftnet()
    x = torch.rand(1, 3, 8, 8)
    path = sft_kernels.export_onnx(model, x, tmp_path / "m.onnx")
    with torch.no_grad():
        y = model(x)
        model.conv0.bias.add_(1e-3)
        shifted = model(x)
    noise = 10 * torch.log10(y.pow(2).sum() / (shifted - y).pow(2).sum()).item()
    check_onnx(model, (x,), path, 1e-9, min_sqnr_db=noise - 3)
    with pytest.raises(RuntimeError, match="SQNR against the model"):
        check_onnx(model, (x,), path, 1e-9, min_sqnr_db=noise + 3)


def test_float_check_scales_with_the_output_magnitude(tmp_path):
    """float32 rounding grows with the outputs: a model whose outputs reach ~1e9 (random-init Inception-v3's logits
    reach 1e12) passes the float check, which a 1e-4 absolute budget alone would refuse."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 3, padding=1)).eval()
    with torch.no_grad():
        model[2].weight.mul_(1e9)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert model(x).abs().max() > 1e8
    sft_kernels.export_onnx(model, x, tmp_path / "big.onnx")


class _ConvAttention(nn.Module):
    """A conv stem and a transformer encoder layer over its pixels (nn.MultiheadAttention, whose eval-mode fast path
    is one fused op ONNX cannot export)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.enc(t).mean(1))


def test_attention_models_export_through_the_standard_path(tmp_path):
    torch.manual_seed(0)
    model = _ConvAttention().eval()
    x = torch.randn(2, 3, 16, 16)
    sft_kernels.convert_(model)
    sft_kernels.export_onnx(model, x, tmp_path / "attn.onnx", dynamic_size=False)  # checked in onnxruntime
    assert torch.backends.mha.get_fastpath_enabled()  # restored
