"""convert_'s live fold: conv → BatchNorm2d → ReLU-like modules run as one conv in eval mode, and as the three modules
in train mode or when gradients are needed; state_dict, revert_, the other transforms and export see the model
as it was."""
import copy

import pytest
import torch
from torch import nn

import sft_kernels
from sft_kernels.nn import Conv2d, FoldedConv2d
from sft_kernels.testing import tol


def _net(affine=True, bias=False):
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=bias), nn.BatchNorm2d(16, affine=affine), nn.ReLU(inplace=True),
        nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.BatchNorm2d(24), nn.LeakyReLU(0.2),
        nn.Conv2d(24, 24, 1, bias=False), nn.BatchNorm2d(24),  # no activation
        nn.Conv2d(24, 8, 3, padding=1), nn.ReLU6(),  # no batch norm
        nn.Conv2d(8, 8, 3, padding=1),  # nothing after it
    )
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            if mod.affine:
                nn.init.uniform_(mod.weight, 0.5, 1.5)
                nn.init.uniform_(mod.bias, -0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("affine,bias", [(True, False), (False, True)])
def test_eval_outputs_state_dict_and_report(affine, bias):
    model = _net(affine, bias)
    ref = copy.deepcopy(model)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    report = sft_kernels.convert_(model)
    assert [type(model[i]) for i in (0, 3, 6, 8, 10)] == [FoldedConv2d] * 4 + [Conv2d]
    assert [type(model[i]).__name__ for i in (1, 2, 4, 5, 7, 9)] == ["FusedAway"] * 6
    fused = {r.name: r.detail for r in report.rows if r.action == "fused"}
    assert set(fused) == {"0", "3", "6", "8"} and "batch norm + ReLU" in fused["0"] and "LeakyReLU" in fused["3"]
    assert model.state_dict().keys() == keys.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in keys.items())
    x = torch.randn(2, 3, 17, 15)
    with torch.no_grad():
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(model(inp), ref(inp), **tol("fp32"))


def test_statistics_changed_after_convert_are_followed():
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        model(x)
        model(x)  # the bound kernel and the folded weights are cached now
        for m in (model, ref):
            m[1].running_var.mul_(3.0)
            m[4].weight.add_(0.5)
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
        new = {k: v + 0.1 if v.is_floating_point() else v for k, v in ref.state_dict().items()}
        ref.load_state_dict(new)
        model.load_state_dict(new)
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))


def test_train_mode_uses_batch_statistics_updates_running_ones_and_trains():
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    model.train(), ref.train()
    x = torch.randn(4, 3, 10, 10)
    for _ in range(2):
        y, r = model(x), ref(x)
        torch.testing.assert_close(y, r, **tol("fp32"))
    y.square().sum().backward()
    r.square().sum().backward()
    for (k, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=k)
    for (k, a), (_, b) in zip(model.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, **tol("fp32"), msg=k)
    model.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))


def test_gradients_in_eval_mode_reach_the_batch_norm():
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    x = torch.randn(2, 3, 9, 9)
    model(x).sum().backward()
    ref(x).sum().backward()
    torch.testing.assert_close(model[1].weight.grad, ref[1].weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[0].weight.grad, ref[0].weight.grad, rtol=1e-4, atol=1e-5)


def test_the_batch_norms_mode_decides_not_the_convs():
    """A model may hold convs in train mode and batch norms in eval (modules rebuilt by a tool): eval statistics."""
    model, ref = _net(), _net()
    model[0].train(), ref[0].train()
    sft_kernels.convert_(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
    model[1].train(), ref[1].train()  # the batch norm's place: batch statistics from here on
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean)


def test_revert_dtype_moves_and_deepcopy():
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    model[4].train(), ref[4].train()
    clone = copy.deepcopy(model)
    assert clone[0].__dict__["_sft_bn"] is clone[1] and clone[1]._buffers is clone[0].__dict__["_sft_bn"]._buffers
    x = torch.randn(1, 3, 11, 11, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(clone.double()(x), copy.deepcopy(ref).double()(x))
    assert sft_kernels.revert_(model) == 5
    assert [type(m) for m in model] == [type(m) for m in _net()]
    assert model[4].training and not model[1].training
    model[4].eval(), ref[4].eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x.float()), ref(x.float()), **tol("fp32"))


def test_other_transforms_see_the_plain_modules():
    x = torch.rand(2, 3, 16, 16)
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    fused = sft_kernels.fuse_for_inference(model, x)
    assert fused.fusion_report[1]["batch_norm"] == 3
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref(x), **tol("fp32"))
        q_ref = copy.deepcopy(ref)
        sft_kernels.quantize_(q_ref, calibration=[x])
        report = sft_kernels.quantize_(model, calibration=[x])
        assert not any(isinstance(m, FoldedConv2d) for m in model.modules())
        assert sum(r.action == "folded" and "batch norm" in r.detail for r in report.rows) == 3
        torch.testing.assert_close(model(x), q_ref(x))


def test_onnx_export_of_a_folded_model(tmp_path):
    pytest.importorskip("onnxruntime")
    model = _net()
    sft_kernels.convert_(model)
    sft_kernels.export_onnx(model, torch.rand(1, 3, 16, 16), tmp_path / "folded.onnx")  # checked in onnxruntime


def test_inference_mode_then_no_grad_and_torch_compile():
    model, ref = _net(), _net()
    sft_kernels.convert_(model)
    x = torch.randn(2, 3, 12, 12)
    with torch.inference_mode():  # the fold made here holds inference tensors; later calls must still work
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
        compiled = torch.compile(model, fullgraph=True)  # traced through the unfused path
        torch.testing.assert_close(compiled(x), ref(x), **tol("fp32"))


def test_modules_with_user_hooks_are_not_folded():
    """A forward hook on the batch norm or activation would stop running if they were folded (feature extraction
    by hooks); one on the conv would see the batch norm's output: such chains stay as they are."""
    model, ref = _net(), _net()
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model[6].register_forward_pre_hook(lambda m, i: None)
    sft_kernels.convert_(model)
    assert type(model[1]) is nn.BatchNorm2d and type(model[0]) is Conv2d and type(model[7]) is nn.BatchNorm2d
    assert type(model[3]) is FoldedConv2d
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), **tol("fp32"))
    assert seen == [(1, 16, 10, 10)]
