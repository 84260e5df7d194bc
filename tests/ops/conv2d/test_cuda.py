"""The CUDA backend without a GPU: every kernel source compiles for sm_80 and sm_90, the torch binding parses
against this torch's headers, and the Python layer (NHWC/KRSC layout, channel padding, weight cache) is
checked against the reference through an emulation of the kernel's contract (csrc/cuda/conv2d/conv2d.h).
On a GPU, tests/test_gpu.py runs the kernel itself."""
import glob
import inspect
import os
import re
import shutil
import subprocess
import sysconfig

import pytest
import torch
import torch.nn.functional as F

from sft_kernels import reference
from sft_kernels.ops.conv2d import cuda as cuda_conv
from sft_kernels.testing import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the checkout
KERNELS = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "**", "*.cu"), recursive=True))
NVCC = shutil.which("nvcc")


def test_cuda_kernels_exist():
    assert KERNELS, "csrc/cuda has no .cu kernels"


@pytest.mark.host_compile
@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("src", KERNELS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "csrc", "cuda")))
def test_cuda_kernel_compiles(src, arch, tmp_path):
    r = subprocess.run([NVCC, "-std=c++17", "-O3", f"-arch={arch}", "-Xptxas", "-warn-spills", "-Xptxas",
                        "-warn-lmem-usage", "-c", src, "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # a tile config that spills, or keeps its accumulators in local memory (an epilogue too big to unroll), is a
    # performance bug
    assert "spill" not in r.stderr and "lmem" not in r.stderr.lower(), r.stderr


CUDA_INCLUDE = next((d for d in (os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "include"),
                                  "/usr/local/cuda/include", os.path.join(os.path.dirname(os.path.dirname(
                                      os.path.realpath(NVCC or "/x/y"))), "include"))
                     if os.path.exists(os.path.join(d, "cuda_runtime.h"))), "")


BINDINGS = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "**", "bindings.cpp"), recursive=True))


@pytest.mark.host_compile
@pytest.mark.skipif(shutil.which("g++") is None or not CUDA_INCLUDE, reason="needs g++ and the CUDA runtime headers")
@pytest.mark.parametrize("src", BINDINGS, ids=lambda p: os.path.relpath(p, os.path.join(ROOT, "csrc", "cuda")))
def test_cuda_binding_parses_against_torch_headers(tmp_path, src):
    """bindings.cpp builds only against a CUDA torch; here it is syntax-checked against the CPU wheel's headers
    plus the one generated header that wheel lacks (c10/cuda/impl/cuda_cmake_macros.h, stubbed)."""
    from torch.utils.cpp_extension import include_paths

    stub = tmp_path / "c10" / "cuda" / "impl"
    stub.mkdir(parents=True)
    (stub / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cmd = ["g++", "-std=c++17", "-fsyntax-only", f"-I{tmp_path}", *[f"-I{p}" for p in include_paths()],
           f"-I{sysconfig.get_paths()['include']}", f"-I{CUDA_INCLUDE}", f"-I{os.path.join(ROOT, 'csrc')}",
           src]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


EMULATED_TILE = (7, 16, 32)  # (config index, BN, BK) the block-sparse emulation stands in for


def emulate_kernel(x, w, bias, stride, padding, dilation, groups, activation, negative_slope, residual,
                   pixel_shuffle, config, blk_ptr=None, blk_idx=None):
    """torch.ops.sft_cuda.conv2d_nhwc's contract (conv2d.h) in float64: NHWC x, KRSC w -> NHWC y; with block lists,
    only the listed (N tile, K tile) blocks of w take part (config: EMULATED_TILE)."""
    assert x.is_contiguous() and w.is_contiguous() and x.shape[3] == groups * w.shape[3] and w.shape[3] % 8 == 0
    if blk_ptr is not None:
        _, bn, bk = EMULATED_TILE
        assert config == EMULATED_TILE[0] and blk_ptr.dtype == blk_idx.dtype == torch.int32
        k, depth = w.shape[0], w[0].numel()
        kg = k // groups
        ntn = -(-kg // bn)
        assert blk_ptr.numel() == groups * ntn + 1
        keep = torch.zeros(groups, kg, depth, dtype=torch.bool)
        for g in range(groups):
            for j in range(ntn):
                sl = g * ntn + j
                for t in blk_idx[blk_ptr[sl]:blk_ptr[sl + 1]].tolist():
                    keep[g, j * bn:(j + 1) * bn, t * bk:(t + 1) * bk] = True
        w = w * keep.reshape(w.shape)
    else:
        assert config == -1
    xd, wd = x.double().permute(0, 3, 1, 2), w.double().permute(0, 3, 1, 2)
    y = F.conv2d(xd, wd, None if bias is None else bias.double(), stride, padding, dilation, groups)
    y = y.relu() if activation == 1 else F.leaky_relu(y, negative_slope) if activation == 2 else y
    y = F.pixel_shuffle(y, pixel_shuffle).permute(0, 2, 3, 1)
    if residual is not None:
        y = y + residual.double()
    return y.to(x.dtype).contiguous()


def test_emulation_takes_the_kernel_schema():
    """emulate_kernel stands in for torch.ops.sft_cuda.conv2d_nhwc: the same arguments in the same order as the
    schema bindings.cpp registers (which has no output-side modulation: SFT modulation is of the conv's input)."""
    with open(os.path.join(ROOT, "csrc", "cuda", "conv2d", "bindings.cpp")) as f:
        src = f.read()
    call = re.search(r'm\.def\(("conv2d_nhwc\(.*?\) -> Tensor")\);', src, re.S)
    assert call, "no conv2d_nhwc schema in bindings.cpp"
    schema = "".join(re.findall(r'"([^"]*)"', call.group(1)))
    args = schema[schema.index("(") + 1:schema.rindex(") ->")]
    names = [a.split()[-1].split("=")[0] for a in args.split(",")]
    assert names == list(inspect.signature(emulate_kernel).parameters)
    assert "scale" not in names and "shift" not in names


CASES = [  # n, c, h, w, k, r, s, stride, padding, dilation, groups, pixel_shuffle
    (1, 3, 9, 11, 64, 3, 3, 1, 1, 1, 1, 1),  # SFTNet's first conv: 3 channels padded to 8
    (2, 16, 7, 6, 12, 3, 3, 2, 1, 1, 1, 1),
    (1, 6, 8, 8, 4, 3, 3, 1, 2, 2, 2, 1),  # grouped, 3 channels per group
    (2, 8, 5, 7, 16, 1, 1, 1, 0, 1, 1, 2),  # 1x1 with a PixelShuffle store
    (1, 64, 6, 5, 3, 3, 3, 1, 1, 1, 1, 1),  # SFTNet's last conv: 3 output channels
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_layout_layer_matches_reference(case, channels_last):
    n, c, h, w, k, r, s, st, pd, dl, g, ps = case
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c // g, r, s), torch.randn(k)
    p, q = (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (s - 1) - 1) // st + 1
    res = torch.randn(n, k // (ps * ps), p * ps, q * ps)
    y = cuda_conv.conv2d(x, wt, b, (st, st), (pd, pd), (dl, dl), g, "leaky_relu", 0.2, res, pixel_shuffle=ps,
                         kernel=emulate_kernel)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g, "leaky_relu", 0.2, res.double(), ps)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert_close(y, ref, k=c // g * r * s)


@pytest.mark.parametrize("case", CASES[:3] + CASES[4:], ids=str)
@pytest.mark.parametrize("pattern", ["block", "unstructured"])
def test_cuda_sparse_layout_and_block_lists_match_reference(case, pattern):
    """sft.sparse_conv2d's cuda launcher: its block lists cover every nonzero (the emulated kernel zeroes whatever
    they leave out) and skip all-zero blocks, on the layouts of the dense cases."""
    from sft_kernels.ops.sparse_conv2d import cuda as sparse_cuda
    from sft_kernels.transforms.prune import masks

    n, c, h, w, k, r, s, st, pd, dl, g, _ = case
    torch.manual_seed(1)
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c // g, r, s), torch.randn(k)
    wt = wt * (masks.block(wt, 0.7, 4) if pattern == "block" else masks.unstructured(wt, 0.7))
    wt[: min(k, 16)] = 0  # an all-zero N tile: an empty list
    y = sparse_cuda.sparse_conv2d(x, wt, b, None, (st, st), (pd, pd), (dl, dl), g, "relu", 0.01,
                                  kernel=emulate_kernel, tile=EMULATED_TILE)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g, "relu")
    assert_close(y, ref, k=c // g * r * s)
    lists = sparse_cuda.block_lists(torch.zeros(32, 3, 3, 8), 1, 16, 32)
    assert lists.tolist() == [0, 0, 0]  # all-zero weight: nothing to walk


def test_cuda_packed_weight_cache_follows_in_place_changes():
    x, wt = torch.randn(1, 3, 6, 6), torch.randn(8, 3, 3, 3)
    run = lambda: cuda_conv.conv2d(x, wt, None, (1, 1), (1, 1), (1, 1), 1, None, 0.01, None,  # noqa: E731
                                   kernel=emulate_kernel)
    first = run()
    assert run() is not first and torch.equal(run(), first)  # cached pack, same answer
    with torch.no_grad():
        wt.mul_(-1)
    assert_close(run(), -first.double(), k=27)


def test_cuda_backend_reports_why_unavailable():
    from sft_kernels import backends

    ok, why = backends.status()["cuda"]
    if not torch.cuda.is_available():
        assert not ok and why
        with pytest.raises(backends.BackendUnavailableError, match="cuda"):
            cuda_conv.conv2d(torch.randn(1, 8, 4, 4), torch.randn(8, 8, 1, 1), None, (1, 1), (0, 0), (1, 1), 1,
                             None, 0.01, None)


def test_compile_for_inference_needs_a_cuda_input():
    from sft_kernels.models import SFTNet, compile_for_inference

    with pytest.raises(ValueError, match="CUDA"):
        compile_for_inference(SFTNet("pytorch", num_blocks=1, channels=8), torch.rand(1, 3, 8, 8))


def test_tile_config_lists_parse_and_pin(monkeypatch):
    """tile_configs(kernel) reads each kernel's "name:BM,BN,BK,WM,WN,STAGES" list (bindings.cpp), and pinned_config
    turns a name from the environment into its index, refusing unknown names (an extension stand-in, no GPU)."""
    import types

    from sft_kernels.runtime import registry

    ext = types.SimpleNamespace(tile_configs=lambda: ["m128_n64_k32_w64x32_s4:128,64,32,64,32,4"],
                                qconv2d_tile_configs=lambda: ["m64_n64_k64_w32x32_s4:64,64,64,32,32,4",
                                                              "m128_n32_k64_w32x32_s4:128,32,64,32,32,4"])
    monkeypatch.setattr(registry, "cuda_ext", lambda: ext)
    monkeypatch.setattr(torch.ops, "sft_cuda", ext, raising=False)
    assert cuda_conv.tile_configs() == [("m128_n64_k32_w64x32_s4", (128, 64, 32, 64, 32, 4))]
    assert cuda_conv.tile_configs("qconv2d")[1] == ("m128_n32_k64_w32x32_s4", (128, 32, 64, 32, 32, 4))
    monkeypatch.delenv("SFT_KERNELS_CUDA_QCONFIG", raising=False)
    assert cuda_conv.pinned_config("SFT_KERNELS_CUDA_QCONFIG", "qconv2d") == -1
    monkeypatch.setenv("SFT_KERNELS_CUDA_QCONFIG", "m128_n32_k64_w32x32_s4")
    assert cuda_conv.pinned_config("SFT_KERNELS_CUDA_QCONFIG", "qconv2d") == 1
    monkeypatch.setenv("SFT_KERNELS_CUDA_QCONFIG", "m1_n1")
    with pytest.raises(ValueError, match="not a qconv2d CUDA tile config; choose one of"):
        cuda_conv.pinned_config("SFT_KERNELS_CUDA_QCONFIG", "qconv2d")
