"""int8 transposed convs (QuantConvTranspose2d: the sub-pixel conv in int8, PixelShuffle in its store, then the
crop): against their QDQ reference (the input on its uint8 grid, ConvTranspose with the dequantized int8 weight) on
every geometry nn.ConvTranspose2d takes with equal strides, through quantize_ on SR- and UNet-like models, in
checkpoints and in ONNX."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.nn.quant_conv_transpose import QDQConvTranspose2d, QuantConvTranspose2d


def _sqnr(y, ref):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((y - ref) ** 2).sum()), 1e-20))


GEOMETRIES = [  # in, out, kernel, stride, padding, output_padding, groups
    (8, 6, 4, 2, 1, 0, 1),  # k = 2s: every phase the same taps
    (24, 3, 9, 2, 4, 1, 1),  # FSRCNN's 9×9 (taps past the kernel are zero)
    (16, 16, 3, 2, 1, 1, 1),  # a UNet decoder's
    (12, 8, 2, 2, 0, 0, 2),  # grouped
    (5, 7, 5, 3, 1, 2, 1),  # stride 3, output_padding 2
    (6, 4, 1, 2, 0, 1, 1),  # 1×1 kernel: three of four phases only the bias
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_int8_transposed_conv_matches_its_qdq_reference(geometry, layout):
    cin, cout, k, s, p, op, g = geometry
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=g)
    x = torch.rand(2, cin, 7, 10)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    q = QuantConvTranspose2d.from_float(conv, 1 / 255, 3)
    with torch.no_grad():
        y, ref, flt = q(x), QDQConvTranspose2d(q)(x), conv(x)
    assert y.shape == flt.shape and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref, atol=1e-5 * ref.abs().max().item(), rtol=1e-5)
    assert _sqnr(y, flt) > 35  # 8-bit weights and activations
    # the dequantized weight is the transposed conv's, element for element, on the int8 grid
    w = q.dequantized_transpose_weight()
    assert w.shape == conv.weight.shape and (w - conv.weight).abs().max() <= q.weight_scale.max() / 2 + 1e-7


def test_output_size_and_bad_inputs():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(4, 4, 3, 2, 1)
    q = QuantConvTranspose2d.from_float(conv, 1 / 255, 0)
    x = torch.rand(1, 4, 5, 6)
    with torch.no_grad():
        for size in ([9, 11], [10, 12], (1, 4, 10, 11)):
            y = q(x, output_size=size)
            assert y.shape == conv(x, output_size=size).shape
            assert _sqnr(y, conv(x, output_size=size)) > 35
        with pytest.raises(ValueError, match="not reachable"):
            q(x, output_size=[12, 12])
        with pytest.raises(ValueError, match=r"expects \[N, 4, H, W\]"):
            q(torch.rand(1, 3, 5, 6))
    with pytest.raises(ValueError, match="unequal strides"):
        QuantConvTranspose2d.from_float(nn.ConvTranspose2d(4, 4, 3, (2, 1)))
    w8a16 = QuantConvTranspose2d.from_float(conv, 1 / 255, 0, act_bits=16)  # float activations: near float
    with torch.no_grad():
        assert _sqnr(w8a16(x), conv(x)) > 40


class UpNet(nn.Module):
    """An FSRCNN-like ×2 head and a UNet-like skip, with an unequal-stride transposed conv that stays float."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.fuse = nn.Conv2d(11, 8, 3, padding=1)
        self.out = nn.ConvTranspose2d(8, 3, 9, 2, 4, 1)
        self.odd = nn.ConvTranspose2d(3, 3, 3, (2, 1), 1, (1, 0))

    def forward(self, x):
        u = torch.relu(self.up(self.enc(x)))
        y = self.out(self.fuse(torch.cat([u, x], 1)))
        return self.odd(y)


def test_quantize_makes_transposed_convs_int8(tmp_path):
    torch.manual_seed(0)
    model = UpNet().eval()
    calib, x = [torch.rand(2, 3, 16, 14) for _ in range(3)], torch.rand(1, 3, 12, 18)
    with torch.no_grad():
        ref = model(x)
    q = copy.deepcopy(model)
    report = sft_kernels.quantize_(q, calibration=calib, progress=False)
    rows = [(r.name, r.action, r.detail) for r in report.rows]
    assert type(q.up) is QuantConvTranspose2d and type(q.out) is QuantConvTranspose2d
    assert {n for n, a, _ in rows if a == "quantized"} >= {"up", "out"}
    assert ("odd", "skipped", "transposed conv with unequal strides: kept float (int8 needs one PixelShuffle "
                              "factor)") in rows, rows
    assert isinstance(q.odd, sft_kernels.nn.ConvTranspose2d)  # converted as convert_ does
    with torch.no_grad():
        y = q(x)
    assert y.shape == ref.shape and y.is_contiguous()  # NCHW in, NCHW out
    assert _sqnr(y, ref) > 28
    again = copy.deepcopy(model)
    sft_kernels.quantize_(again, calibration=[c * 0.5 for c in calib], progress=False)
    again.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), y)
    sft_kernels.export_onnx(q, x, tmp_path / "upnet.onnx")  # checked in onnxruntime against q


def test_the_transposed_convs_sub_pixel_bias_and_layouts_with_uint8_input():
    """A uint8 input (on the conv's own grid) is read as the QuantConv2d reads one."""
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(8, 4, 4, 2, 1)
    q = QuantConvTranspose2d.from_float(conv, 0.02, 10)
    xq = torch.randint(0, 256, (1, 8, 6, 5), dtype=torch.uint8)
    with torch.no_grad():
        y = q(xq)
        ref = F.conv_transpose2d((xq.float() - 10) * 0.02, q.dequantized_transpose_weight(), conv.bias, 2, 1)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-5)


def test_qat_keeps_transposed_convs_float():
    torch.manual_seed(0)
    model, x = UpNet(), torch.rand(1, 3, 16, 14)
    report = sft_kernels.prepare_qat_(model, calibration=[x])
    rows = [(r.name, r.action, r.detail) for r in report.rows]
    assert ("up", "skipped", "transposed conv: kept float by QAT") in rows, rows
    model.train()
    model(x).mean().backward()
    model.eval()
    sft_kernels.convert_qat_(model)
    assert type(model.up) is nn.ConvTranspose2d and type(model.enc[0]) is sft_kernels.nn.QuantConv2d
    with torch.no_grad():
        assert model(x).shape == UpNet()(x).shape
