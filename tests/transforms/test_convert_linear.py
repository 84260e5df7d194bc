"""convert_ on nn.Linear layers: rows as the pixels of one channels_last image on our 1×1 conv, an activation module
after a Linear folded into its store (ConvNeXt's MLP: Linear → GELU → Linear over NHWC maps)."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.nn import Linear
from sft_kernels.nn.folded_conv import FusedAway
from sft_kernels.nn.linear import MIN_ROWS

from tests.conftest import op_backends

pytestmark = pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")


class MLPBlock(nn.Module):
    """A ConvNeXt block in small: depthwise 7×7, then LayerNorm → Linear → act → Linear on the NHWC view, a
    residual, and a classifier head on the pooled features (one row per image: F.linear's case)."""

    def __init__(self, c=24, act=None):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.mlp = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 4 * c), act or nn.GELU(), nn.Linear(4 * c, c))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        y = self.mlp(self.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + x
        return self.head(y.mean((2, 3)))


@pytest.mark.parametrize("act,name", [(nn.GELU(), "gelu"), (nn.GELU(approximate="tanh"), "gelu_tanh"),
                                      (nn.ReLU(), "relu"), (nn.SiLU(), "silu")])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_linear_with_folded_activation_matches_eager(act, name, layout):
    torch.manual_seed(0)
    m = MLPBlock(act=act).eval()
    x = torch.randn(2, 24, 13, 11)
    x = x if layout == "nchw" else x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = m(x)
        feats = m.mlp(m.dw(x).permute(0, 2, 3, 1))
    c = copy.deepcopy(m)
    report = sft_kernels.convert_(c)
    assert {"mlp.1", "mlp.3", "head"} <= set(report.converted)
    assert type(c.mlp[1]) is Linear and c.mlp[1].activation == name and isinstance(c.mlp[2], FusedAway)
    assert any(r.name == "mlp.1" and r.detail.startswith("linear +") for r in report.rows if r.action == "fused")
    assert c.state_dict().keys() == m.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(c(x), ref, rtol=1e-4, atol=1e-5)
        # the rows ran on our kernel (2·13·11 = 286 rows), not F.linear: its rounding differs from F.linear's
        mine = c.mlp(c.dw(x).permute(0, 2, 3, 1))
        torch.testing.assert_close(mine, feats, rtol=1e-4, atol=1e-5)
        for _ in range(12):  # (the call is bound once the backend choice is final: after the autotuner's second look)
            c(x)
        assert c.mlp[1].__dict__["_fast"] is not None
        torch.testing.assert_close(c(x), ref, rtol=1e-4, atol=1e-5)


def test_training_and_gradients_run_f_linear_exactly():
    torch.manual_seed(1)
    m = MLPBlock()
    c = copy.deepcopy(m)
    sft_kernels.convert_(c)
    x = torch.randn(2, 24, 9, 9)
    y0, y1 = m(x), c(x)
    assert torch.equal(y0, y1)  # F.linear and the activation module's own function
    y1.sum().backward()
    y0.sum().backward()
    for (n, p0), p1 in zip(m.named_parameters(), c.parameters()):
        torch.testing.assert_close(p1.grad, p0.grad, msg=n)


def test_linear_path_choice():
    lin = Linear(64, 32).eval()
    torch.manual_seed(2)
    few, many = torch.randn(MIN_ROWS - 1, 64), torch.randn(3, MIN_ROWS, 64)
    with torch.no_grad():
        assert not lin._ours(few) and lin._ours(many)
        assert not lin._ours(many.double()) and not lin._ours(many[..., :32])
        # rows of a permuted NCHW map (a transposed view), an odd number of them, and a prime
        for x in (torch.randn(2, 64, 7, 9).permute(0, 2, 3, 1), torch.randn(1, 127, 64), torch.randn(0, 64)):
            torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not lin._ours(many)


def test_bound_call_follows_weight_bias_and_activation_changes():
    torch.manual_seed(3)
    lin = Linear(40, 48).eval()
    x = torch.randn(300, 40)
    with torch.no_grad():
        for _ in range(12):
            lin(x)
        assert lin.__dict__["_fast"] is not None
        lin.weight.mul_(2)  # in place: version counter
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-4, atol=1e-5)
        lin.bias.add_(1)
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-4, atol=1e-5)
        lin.weight = nn.Parameter(torch.randn(48, 40))  # a new tensor
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-4, atol=1e-5)
        lin.activation = "relu"
        torch.testing.assert_close(lin(x), F.relu(F.linear(x, lin.weight, lin.bias)), rtol=1e-4, atol=1e-5)


def test_save_copy_revert_and_transforms_see_plain_modules():
    torch.manual_seed(4)
    m = MLPBlock().eval()
    x = torch.randn(1, 24, 12, 12)
    c = copy.deepcopy(m)
    sft_kernels.convert_(c)
    with torch.no_grad():
        ref = c(x)  # binds the kernel call
        buf = io.BytesIO()
        torch.save(c, buf)
        buf.seek(0)
        torch.testing.assert_close(torch.load(buf, weights_only=False)(x), ref)
        torch.testing.assert_close(copy.deepcopy(c)(x), ref)
    q = copy.deepcopy(c)
    sft_kernels.revert_(c)
    assert type(c.mlp[1]) is nn.Linear and type(c.mlp[2]) is nn.GELU and type(c.head) is nn.Linear
    assert not hasattr(c.mlp[1], "activation")
    # quantize_ after convert_: the Linears and their GELU come back as plain modules first, then the GELU folds
    # into the int8 Linear
    sft_kernels.quantize_(q, sft_kernels.Int8Config(), calibration=[torch.randn(1, 24, 12, 12)])
    assert type(q.mlp[1]).__name__ == "QuantLinear" and q.mlp[1].activation == "gelu"
    with torch.no_grad():
        torch.testing.assert_close(q(x), m(x), rtol=0.1, atol=0.05)


def test_linear_subclasses_and_filter_are_left_alone():
    mha = nn.MultiheadAttention(16, 2)  # out_proj: an nn.Linear subclass whose weight the owner reads itself
    m = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8))
    m.add_module("mha", mha)
    report = sft_kernels.convert_(m, filter_fn=lambda mod, name: name != "1")
    assert type(m[0]) is Linear and type(m[1]) is nn.Linear and type(mha.out_proj) is not Linear
    assert ("1", "excluded by filter_fn") in report.skipped


def test_converted_linear_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(5)
    m = MLPBlock(act=nn.GELU(approximate="tanh")).eval()
    sft_kernels.convert_(m)
    assert m.mlp[1].activation == "gelu_tanh"
    sft_kernels.export_onnx(m, torch.randn(1, 24, 10, 10), tmp_path / "m.onnx")  # checked in onnxruntime


def test_quantize_folds_the_activation_after_a_linear_into_its_int8_store(tmp_path):
    torch.manual_seed(6)
    m = MLPBlock().eval()
    x = torch.randn(2, 24, 12, 12)
    q = copy.deepcopy(m)
    report = sft_kernels.quantize_(q, sft_kernels.Int8Config(), calibration=[torch.randn(2, 24, 12, 12)],
                                   progress=False)
    assert q.mlp[1].activation == "gelu" and type(q.mlp[2]) is nn.Identity
    assert ("mlp.2", "folded") in [(r.name, r.action) for r in report.rows]
    with torch.no_grad():
        ref, y = m(x), q(x)
        sqnr = 10 * torch.log10(ref.pow(2).mean() / (y - ref).pow(2).mean())
        assert sqnr > 25, sqnr
        # the store's GELU against the same int8 Linear without it, followed by F.gelu
        rows = torch.randn(300, 24)
        plain = copy.deepcopy(q.mlp[1])
        plain.activation = None
        torch.testing.assert_close(q.mlp[1](rows), F.gelu(plain(rows)), rtol=1e-4, atol=1e-5)
        w8a16 = type(q.mlp[1]).from_float(m.mlp[1], q.mlp[1].input_scale, q.mlp[1].input_zero_point, 16)
        w8a16.activation = "gelu"
        torch.testing.assert_close(w8a16(rows), F.gelu(F.linear(rows, w8a16.dequantized_weight(), w8a16.bias)))
    # the activation is saved with the layer and exported
    again = copy.deepcopy(m)
    sft_kernels.quantize_(again, sft_kernels.Int8Config(), calibration=[torch.randn(2, 24, 12, 12)],
                          progress=False)
    again.load_state_dict(q.state_dict())
    assert again.mlp[1].activation == "gelu"
    pytest.importorskip("onnxruntime")
    sft_kernels.export_onnx(q, x[:1], tmp_path / "q.onnx")  # checked in onnxruntime


def test_a_users_own_linear_is_not_folded_so_revert_stays_exact():
    """A sft_kernels.nn.Linear the user built (not convert_'s) keeps its activation module: revert_ could not tell
    its folded activation from its own."""
    torch.manual_seed(7)
    m = nn.Sequential(Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).eval()
    x = torch.randn(50, 8)
    with torch.no_grad():
        ref = m(x)
    sft_kernels.convert_(m)
    assert m[0].activation is None and type(m[1]) is nn.GELU
    sft_kernels.revert_(m)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)


def test_other_backends_and_unbuilt_extension_run_f_linear(monkeypatch):
    lin = Linear(16, 8, backend="reference").eval()
    x = torch.randn(100, 16)
    with torch.no_grad():
        assert not lin._ours(x)
        lin.backend = None
        assert lin._ours(x)
        from sft_kernels.runtime import registry
        monkeypatch.setattr(registry, "cpu_ext", lambda: None)
        assert not lin._ours(x)
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias))
