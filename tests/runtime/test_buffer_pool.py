"""Large cpu op outputs come from a reuse pool (csrc/cpu/buffer_pool.cpp): reused only once dead, never shared."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sft_kernels import backends
from sft_kernels.ops import conv2d, matmul
from sft_kernels.testing import tol

pytestmark = pytest.mark.skipif(not backends.supports("cpu", "conv2d", "cpu", torch.float32),
                                reason="cpu extension not built")


def _conv(x, w):
    return conv2d(x, w, padding=1, backend="cpu")


def test_dead_output_is_reused_and_values_are_right():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 64, 64).contiguous(memory_format=torch.channels_last)  # 1 MiB+ output: pooled
    w = torch.randn(64, 16, 3, 3)
    y = _conv(x, w)
    ptr = y.data_ptr()
    del y
    y2 = _conv(x, w)
    assert y2.data_ptr() == ptr, "a dead pooled output should be handed to the next call of its size"
    torch.testing.assert_close(y2, F.conv2d(x, w, padding=1), **tol("fp32_wide"))
    assert y2.is_contiguous(memory_format=torch.channels_last)


def test_last_freed_block_is_reused_first():
    """Of several idle blocks of one size the one freed last (likeliest still in cache) is handed out next."""
    a, b = torch.randn(600, 500), torch.randn(500, 701)  # 1.6 MB output, a size no other test uses
    outs = [matmul(a, b, backend="cpu") for _ in range(3)]
    ptrs = [o.data_ptr() for o in outs]
    for i in (1, 0, 2):  # freed in this order: 2 is the newest idle block, then 0
        outs[i] = None
    first, second = matmul(a, b, backend="cpu"), matmul(a, b, backend="cpu")
    assert (first.data_ptr(), second.data_ptr()) == (ptrs[2], ptrs[0])


def test_live_outputs_never_share_memory():
    x = torch.randn(1, 16, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 16, 3, 3)
    outs = [_conv(x * (i + 1), w) for i in range(3)]
    assert len({o.data_ptr() for o in outs}) == 3
    for i, o in enumerate(outs):  # each kept its own values
        torch.testing.assert_close(o, F.conv2d(x * (i + 1), w, padding=1), **tol("fp32_wide"))


def test_pooled_outputs_behave_like_tensors():
    a, b = torch.randn(600, 500), torch.randn(500, 700)  # 1.6 MB output
    c = matmul(a, b, backend="cpu")
    assert c.is_contiguous() and c.shape == (600, 700)
    c.add_(1)  # in place works
    c2 = c.clone()
    torch.testing.assert_close(c2, a @ b + 1, **tol("fp32_wide"))
    del c, c2


def test_clear_releases_idle_buffers():
    backends.cpu_ext()
    y = matmul(torch.randn(700, 600), torch.randn(600, 800), backend="cpu")
    del y
    assert torch.ops.sft_cpu.buffer_pool_idle_bytes() > 0
    torch.ops.sft_cpu.buffer_pool_clear()
    assert torch.ops.sft_cpu.buffer_pool_idle_bytes() == 0


def test_pool_size_zero_disables_it():
    code = (
        "import torch\nfrom sft_kernels import backends\nfrom sft_kernels.ops import matmul\nbackends.cpu_ext()\n"
        "y = matmul(torch.randn(700, 600), torch.randn(600, 800), backend='cpu')\ndel y\n"
        "print(torch.ops.sft_cpu.buffer_pool_idle_bytes())\n"
    )
    env = dict(os.environ, SFT_KERNELS_POOL_MB="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
