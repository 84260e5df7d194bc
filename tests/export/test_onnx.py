"""export_onnx: float, converted (fused SFTNet forward, fused separable pairs) and int8 (QDQ, int8 weight
initializers) models run in onnxruntime and match the model within the tolerance table; dynamic batch and size."""
import copy

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
