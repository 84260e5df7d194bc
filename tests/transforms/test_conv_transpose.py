"""nn.ConvTranspose2d converted to a sub-pixel conv (sft_kernels.nn.ConvTranspose2d): every geometry against
PyTorch's transposed conv, on every cpu backend; convert_ / revert_ / export / training on models that upsample
with it (FSRCNN, a UNet decoder)."""
import random

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.nn import ConvTranspose2d
from sft_kernels.nn.conv_transpose import subpixel_geometry
from sft_kernels.testing import tol
from tests.conftest import op_backends

BACKENDS = op_backends("conv2d")


def _draws(n, seed):
    rng = random.Random(seed)
    for _ in range(n):
        k = (rng.randint(1, 9), rng.randint(1, 9))
        s = (rng.randint(1, 4),) * 2 if rng.random() < 0.6 else (rng.randint(1, 4), rng.randint(1, 4))
        p = (rng.randint(0, k[0] - 1), rng.randint(0, k[1] - 1))
        op = (rng.randint(0, s[0] - 1), rng.randint(0, s[1] - 1))
        g = rng.choice([1, 1, 2, 3])
        yield k, s, p, op, g, g * rng.randint(1, 4), g * rng.randint(1, 5), rng.randint(1, 9), rng.randint(1, 9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_geometry_matches_pytorch(backend):
    torch.manual_seed(0)
    ran = 0
    for k, s, p, op, g, cin, cout, h, w in _draws(120, 1):
        m = nn.ConvTranspose2d(cin, cout, k, s, p, op, groups=g, bias=(h + w) % 3 > 0).eval()
        x = torch.randn(1 + (h % 2), cin, h, w)
        try:
            expected = m(x)
        except RuntimeError:  # an output size PyTorch refuses (negative)
            continue
        with torch.no_grad():
            got = ConvTranspose2d.from_conv(m, backend=backend)(x)
        assert got.shape == expected.shape, (k, s, p, op, g, h, w)
        torch.testing.assert_close(got, expected, **tol("fp32"), msg=lambda e: f"{(k, s, p, op, g, h, w)}: {e}")
        ran += 1
    assert ran > 80


def test_output_size_and_channels_last_input():
    torch.manual_seed(0)
    m = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1).eval()
    c = ConvTranspose2d.from_conv(m)
    x = torch.randn(1, 8, 7, 5)
    with torch.no_grad():
        for size in (None, [14, 10], [13, 9]):
            expected = m(x, output_size=size)
            for xin in (x, x.contiguous(memory_format=torch.channels_last)):
                torch.testing.assert_close(c(xin, output_size=size), expected, **tol("fp32"))


def test_geometry_covers_every_output_row():
    for k in range(1, 10):
        for s in range(1, 5):
            for p in range(k):
                for n in range(1, 7):
                    n_out = (n - 1) * s - 2 * p + k
                    if n_out < 1:
                        continue
                    m, pad, off = subpixel_geometry(k, s, p, n, n_out)
                    rows = (n + 2 * pad - m + 1) * s
                    assert pad >= m - 1 and 0 <= off and off + n_out <= rows, (k, s, p, n)


class FSRCNN(nn.Module):
    def __init__(self, scale=2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.PReLU(32), nn.Conv2d(32, 12, 1), nn.PReLU(12),
                                  nn.Conv2d(12, 12, 3, padding=1), nn.PReLU(12), nn.Conv2d(12, 32, 1), nn.PReLU(32))
        self.up = nn.ConvTranspose2d(32, 3, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x):
        return self.up(self.body(x))


class UNetUp(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.mid = nn.Conv2d(16, 32, 3, padding=1)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.up4 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.out = nn.Conv2d(48, 3, 1)

    def forward(self, x):
        d = self.down(x)
        m = torch.relu(self.mid(d))
        return self.out(torch.cat([self.up(m), self.up4(m), nn.functional.interpolate(d, scale_factor=2)], 1))


@pytest.mark.parametrize("model_cls", [FSRCNN, UNetUp])
def test_convert_revert_export_and_train(model_cls, tmp_path):
    torch.manual_seed(0)
    model = model_cls().eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = model(x)
    report = sft_kernels.convert_(model)
    assert "up" in report.converted and isinstance(model.up, ConvTranspose2d)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, **tol("fp32"))
        assert model(x).is_contiguous()  # NCHW in, NCHW out
    pytest.importorskip("onnxruntime")
    sft_kernels.export_onnx(model, x, tmp_path / "m.onnx")  # checked in onnxruntime
    model.train()
    model(x).mean().backward()
    assert model.up.weight.grad is not None
    model.eval()
    assert sft_kernels.revert_(model) >= 1 and type(model.up) is nn.ConvTranspose2d
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, **tol("fp32"))


def test_weights_edited_in_place_are_seen():
    m = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1).eval()
    c = ConvTranspose2d.from_conv(m)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        c(x)
        m.weight.mul_(2)
        torch.testing.assert_close(c(x), m(x), **tol("fp32"))


def test_dilated_transposed_conv_stays_pytorchs():
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, stride=2, dilation=2))
    report = sft_kernels.convert_(model)
    assert report.skipped == [("0", "transposed convolution with dilation is not supported")]


def test_each_layer_gets_its_own_measured_choice():
    from sft_kernels.runtime import autotune

    autotune.clear()
    model = nn.Sequential(nn.ConvTranspose2d(16, 16, 2, stride=2), nn.ConvTranspose2d(16, 3, 9, stride=3, padding=4))
    sft_kernels.convert_(model)
    x = torch.rand(1, 16, 6, 6)
    try:
        with torch.no_grad():
            model[0](x), model[1](x)  # the same input shape
        assert len([k for k in autotune.choices() if k[0] == "conv_transpose2d"]) == 2
    finally:
        autotune.clear()


def test_a_bad_knob_is_not_taken_for_a_failed_candidate():
    from tests.conftest import run_fresh

    code = ("import torch, sft_kernels\nm = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 4, 2, stride=2)).eval()\n"
            "sft_kernels.convert_(m)\nwith torch.no_grad():\n    m(torch.rand(1, 4, 5, 5))\n")
    proc = run_fresh(code, SFT_KERNELS_POOL_MB="-5")
    assert proc.returncode != 0 and "SFT_KERNELS_POOL_MB='-5' is not valid" in proc.stderr
