"""The 2:4 sparse tensor-core path of sft.sparse_conv2d without a GPU: the packer (values + metadata in mma.sp
fragment order) against an independent decoder that reads the words as the hardware does, the metadata bits
against a value known to run (LLVM's mma.sp m16n8k32 f16 integration test uses 0x8888 for kept positions 0 and 2),
and the launcher (ops/sparse_conv2d/cuda.py) against the reference through an emulation of the kernel's contract
(csrc/cuda/sparse_conv2d/sparse24.h). The kernel compiles for sm_80 / sm_90 in tests/ops/conv2d/test_cuda.py; on a
GPU, tests/gpu/test_gpu.py runs it."""
import inspect
import os
import re

import pytest
import torch
import torch.nn.functional as F

from sft_kernels import reference
from sft_kernels.ops.sparse_conv2d import cuda as sparse_cuda
from sft_kernels.ops.sparse_conv2d.pack24 import is_24, pack24, unpack24
from sft_kernels.testing import assert_close
from sft_kernels.transforms.prune import masks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TILE24 = (2, 128, 64)  # (config index, BM, BK) the emulation stands in for
CALLS = []


def emulate_sparse24(x, wv, meta, bias, residual, stride, padding, dilation, groups, kh, kw, activation,
                     negative_slope, config):
    """torch.ops.sft_cuda.sparse24_conv2d_nhwc's contract in float64: the dense weight the metadata selects, then
    the conv and conv2d.cu's epilogue, NHWC in and out."""
    assert config == TILE24[0] and meta.dtype == torch.int32 and x.is_contiguous() and wv.is_contiguous()
    CALLS.append(config)
    cg = x.shape[3] // groups
    w = unpack24(wv, meta, (wv.shape[0], cg, kh, kw), groups, TILE24[1], TILE24[2])
    y = F.conv2d(x.double().permute(0, 3, 1, 2), w.double(), None if bias is None else bias.double(), stride, padding,
                 dilation, groups)
    y = y.relu() if activation == 1 else F.leaky_relu(y, negative_slope) if activation == 2 else y
    y = y.permute(0, 2, 3, 1)
    if residual is not None:
        y = y + residual.double()
    return y.to(x.dtype).contiguous()


def test_emulation_takes_the_kernel_schema():
    with open(os.path.join(ROOT, "csrc", "cuda", "sparse_conv2d", "bindings.cpp")) as f:
        src = f.read()
    call = re.search(r'm\.def\(("sparse24_conv2d_nhwc\(.*?\) -> Tensor")\);', src, re.S)
    assert call, "no sparse24_conv2d_nhwc schema in bindings.cpp"
    schema = "".join(re.findall(r'"([^"]*)"', call.group(1)))
    args = schema[schema.index("(") + 1:schema.rindex(") ->")]
    assert [a.split()[-1] for a in args.split(",")] == list(inspect.signature(emulate_sparse24).parameters)


def _weight24(k, cg, r, seed=0, dtype=torch.float16):
    w = torch.randn(k, cg, r, r, generator=torch.Generator().manual_seed(seed)).to(dtype)
    w = w * masks.n_m(w, 2, 4)
    w[0] = 0  # an all-zero filter
    w[-1, : min(cg, 4)] = 0  # runs with fewer than two kept
    return w


@pytest.mark.parametrize("k,cg,r,groups,bm,bk", [(64, 64, 3, 1, 64, 64), (33, 12, 3, 1, 32, 64),
                                                 (36, 16, 3, 3, 128, 64), (3, 64, 3, 1, 32, 64),
                                                 (40, 8, 1, 1, 64, 64), (16, 24, 5, 2, 64, 64)])
def test_pack_round_trips_through_the_hardware_decoding(k, cg, r, groups, bm, bk):
    w = _weight24(k, cg, r)
    assert is_24(w)
    values, meta = pack24(w, groups, bm, bk)
    kpad = -(-(r * r * (-(-cg // 8) * 8)) // bk) * bk
    assert values.shape == (k, kpad // 2) and values.dtype == w.dtype
    assert meta.numel() == groups * -(-(k // groups) // bm) * (kpad // bk) * bm * bk // 16
    assert torch.equal(unpack24(values, meta, w.shape, groups, bm, bk), w)


def test_metadata_bits_match_a_known_good_word():
    """Kept positions 0 and 2 in every run: 0x8888 per 16 steps (first position in the low bits); lane 0 holds rows
    0 (low half) and 8 (high half) of its first 16 steps."""
    w = torch.zeros(16, 32, 1, 1, dtype=torch.float16)
    w[:, 0::4], w[:, 2::4] = 1.0, 2.0
    _, meta = pack24(w, 1, 16, 32)
    assert meta.numel() == 32
    assert (meta.to(torch.int64) & 0xFFFFFFFF).eq(0x88888888).all()
    w[3, 1], w[3, 2] = 5.0, 0.0  # row 3, first run: positions 0 and 1 -> nibble 0b0100 in lane 12's low half
    _, meta = pack24(w, 1, 16, 32)
    assert int(meta[12]) & 0xFFFF == 0x8884 and int(meta[13]) & 0xFFFF == 0x8888


def test_weights_that_are_not_24_are_refused():
    w = torch.ones(8, 8, 3, 3)
    assert not is_24(w) and pack24(w, 1, 64, 64) is None
    w[:, 2:] = 0
    assert is_24(w)


CASES = [  # n, c, h, w, k, r, stride, padding, dilation, groups
    (1, 64, 9, 7, 64, 3, 1, 1, 1, 1),
    (2, 16, 7, 6, 36, 3, 2, 1, 1, 1),
    (1, 24, 8, 8, 12, 3, 1, 2, 2, 2),  # grouped, 12 channels per group (padded to 16), dilation
    (2, 32, 5, 7, 130, 1, 1, 0, 1, 1),  # 1x1, K past one 128-channel tile
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_launcher_runs_24_weights_on_the_sparse_kernel(case, dtype):
    n, c, h, w, k, r, st, pd, dl, g = case
    torch.manual_seed(2)
    x = torch.randn(n, c, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
    wt, b = _weight24(k, c // g, r, dtype=dtype), torch.randn(k).to(dtype)
    p, q = (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (r - 1) - 1) // st + 1
    res = torch.randn(n, k, p, q).to(dtype)
    CALLS.clear()
    y = sparse_cuda.sparse_conv2d(x, wt, b, res, (st, st), (pd, pd), (dl, dl), g, "leaky_relu", 0.1,
                                  kernel=lambda *a: pytest.fail("a 2:4 weight went to the block lists"),
                                  kernel24=emulate_sparse24, tile24=TILE24)
    assert CALLS == [TILE24[0]]
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g, "leaky_relu", 0.1, res.double())
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, ref, k=c // g * r * r)


def test_other_weights_and_the_switch_go_to_the_block_lists(monkeypatch):
    from tests.ops.conv2d.test_cuda import EMULATED_TILE, emulate_kernel

    x = torch.randn(1, 16, 6, 6).half()
    dense_w = torch.randn(16, 16, 3, 3).half() * masks.unstructured(torch.randn(16, 16, 3, 3), 0.3)
    w24 = _weight24(16, 16, 3)
    for w, switch in ((dense_w, "1"), (w24, "0")):
        monkeypatch.setenv("SFT_KERNELS_CUDA_SPARSE24", switch)
        y = sparse_cuda.sparse_conv2d(x, w, None, None, (1, 1), (1, 1), (1, 1), 1, None, 0.01, kernel=emulate_kernel,
                                      tile=EMULATED_TILE, kernel24=lambda *a: pytest.fail("took the 2:4 kernel"),
                                      tile24=TILE24)
        assert_close(y, reference.conv2d(x.double(), w.double(), None, 1, 1), k=144)
