"""Weights laid out for a channels_last input once, not on every call of a plain-PyTorch conv."""
import torch
import torch.nn.functional as F

from sft_kernels import ops
from sft_kernels.runtime import weight_pack


def test_like_input_caches_a_channels_last_weight_and_follows_in_place_updates():
    w = torch.randn(8, 4, 3, 3)
    x = torch.randn(1, 4, 9, 7).contiguous(memory_format=torch.channels_last)
    a = weight_pack.like_input(w, x)
    assert a.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, w)
    assert weight_pack.like_input(w, x) is a
    with torch.no_grad():
        w.mul_(2)
    b = weight_pack.like_input(w, x)
    assert b is not a and torch.equal(b, w)


def test_like_input_leaves_the_weight_for_nchw_and_ambiguous_inputs():
    w = torch.randn(8, 4, 3, 3)
    assert weight_pack.like_input(w, torch.randn(1, 4, 5, 5)) is w
    assert weight_pack.like_input(w, torch.randn(1, 4, 1, 1)) is w  # both layouts at once: ATen keeps NCHW
    wc = w.contiguous(memory_format=torch.channels_last)
    assert weight_pack.like_input(wc, torch.randn(1, 4, 5, 5).contiguous(memory_format=torch.channels_last)) is wc


def test_reference_conv_of_a_channels_last_input_reuses_the_laid_out_weight():
    torch.manual_seed(0)
    w, b = torch.randn(16, 8, 3, 3), torch.randn(16)
    x = torch.randn(2, 8, 11, 13).contiguous(memory_format=torch.channels_last)
    y = ops.conv2d(x, w, b, 1, 1, backend="reference")
    torch.testing.assert_close(y, F.conv2d(x, w, b, 1, 1))
    assert "channels_last" in weight_pack.cached(w)
    with torch.no_grad():
        w.neg_()
    torch.testing.assert_close(ops.conv2d(x, w, b, 1, 1, backend="reference"), F.conv2d(x, w, b, 1, 1))


def test_reference_conv_still_trains_the_weight():
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = torch.randn(1, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    ops.conv2d(x, w, None, 1, 1, backend="reference").sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    F.conv2d(x, w2, None, 1, 1).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)
