"""The layout policy's NCHW <-> channels_last changes (sft_kernels/runtime/layout.py): the cpu extension's blocked
transpose (16×16 register transposes inside whole blocks, a scalar loop at the edges and on other ISAs; 1 to 4 channels
interleaved 16 pixels at a time) gives exactly ATen's copy, both ways, and autograd, torch.compile, non-contiguous and
non-float inputs take ATen's copy."""
import os
import subprocess
import sys

import pytest
import torch

from sft_kernels.runtime import registry
from sft_kernels.runtime.layout import to_channels_last, to_nchw
from sft_kernels.testing import tol

CPU = registry.cpu_ext() is not None
SHAPES = [(1, 64, 128, 128), (2, 40, 33, 35), (1, 3, 224, 224), (3, 17, 9, 130), (1, 96, 16, 16), (1, 1, 200, 100),
          (2, 2, 131, 67), (1, 4, 99, 171), (3, 3, 5, 7)]  # 1 to 4 channels: interleaved, with pixel tails


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_nchw_maps_are_laid_out_channels_last_exactly(shape):
    x = torch.randn(*shape)
    y = to_channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, x)
    if CPU and x.numel() >= 1 << 14:
        z = torch.ops.sft_cpu.to_channels_last(x)  # the extension's path itself, whatever the size
        assert torch.equal(z, x) and z.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_channels_last_maps_go_back_to_nchw_exactly(shape):
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    y = to_nchw(x)
    assert y.is_contiguous() and torch.equal(y, x)
    if CPU:
        z = torch.ops.sft_cpu.to_nchw(x)  # the extension's path itself, whatever the size
        assert torch.equal(z, x) and z.is_contiguous()
    assert to_nchw(y) is y


def test_to_nchw_of_other_inputs():
    x = torch.randn(1, 32, 24, 24).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    to_nchw(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    for t in (torch.randn(1, 64, 20, 40).contiguous(memory_format=torch.channels_last)[:, ::2],
              torch.randn(1, 32, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last),
              torch.randint(0, 255, (1, 32, 32, 32), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)):
        y = to_nchw(t)
        assert torch.equal(y, t) and y.is_contiguous()
        if CPU:
            z = torch.ops.sft_cpu.to_nchw(t)
            assert torch.equal(z, t) and z.is_contiguous()
    flat = torch.randn(5, 7)
    assert to_nchw(flat) is flat


def test_other_inputs_take_atens_copy_and_keep_autograd():
    x = torch.randn(1, 32, 24, 24, requires_grad=True)
    y = to_channels_last(x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    for t in (torch.randn(1, 64, 20, 40)[:, ::2], torch.randn(1, 32, 32, 32, dtype=torch.float64),
              torch.randint(0, 255, (1, 32, 32, 32), dtype=torch.uint8)):
        y = to_channels_last(t)
        assert torch.equal(y, t) and y.is_contiguous(memory_format=torch.channels_last)
    cl = torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    assert to_channels_last(cl) is cl
    flat = torch.randn(5, 7)
    assert to_channels_last(flat) is flat


@pytest.mark.skipif(not CPU, reason="cpu backend not built")
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_scalar_transpose_on_other_isas(isa):
    code = ("import torch\n"
            "from sft_kernels.runtime import registry\n"
            "assert registry.cpu_ext() is not None\n"
            "for shape in ((1, 64, 128, 128), (2, 40, 33, 35)):\n"
            "    x = torch.randn(*shape)\n"
            "    y = torch.ops.sft_cpu.to_channels_last(x)\n"
            "    assert torch.equal(y, x) and y.is_contiguous(memory_format=torch.channels_last)\n"
            "    z = torch.ops.sft_cpu.to_nchw(y)\n"
            "    assert torch.equal(z, x) and z.is_contiguous()\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, SFT_KERNELS_ISA=isa),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(not CPU, reason="cpu backend not built")
def test_converted_modules_fed_nchw_match_eager():
    """A converted conv and a fused separable pair fed an ordinary NCHW tensor: eager's values, channels_last
    between them, NCHW out (the caller's layout)."""
    import copy

    from torch import nn

    import sft_kernels
    seq = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv2d(16, 24, 1),
                        nn.Conv2d(24, 8, 3, padding=1)).eval()
    conv = copy.deepcopy(seq)
    sft_kernels.convert_(conv, backend="cpu")
    x = torch.randn(2, 16, 40, 36)
    with torch.no_grad():
        y = conv(x)
        ref = seq(x)
    assert y.is_contiguous() and conv[0](x).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref, **tol("fp32"))
