"""sft.sparse_conv2d on every backend and every cpu tile-kernel ISA against the masked dense reference: random
masks (unstructured, blocks of 4 output channels, N:M), empty rows and columns, all-zero filters and an all-zero
weight, odd shapes, stride, dilation, groups, 1×1 and 5×3 kernels, NCHW and channels_last, bias / activation /
residual / modulation; opcheck and torch.compile; bad inputs."""
import os
import subprocess
import sys

import pytest
import torch

from sft_kernels.ops import sparse_conv2d
from sft_kernels.ops.sparse_conv2d import reference as ref
from sft_kernels.testing import tol, tolerance
from sft_kernels.transforms.prune import masks
from tests.conftest import op_backends

BACKENDS = op_backends("sparse_conv2d", torch.float32)
CASES = [  # n, c, h, w, k, r, s, stride, padding, dilation, groups
    (1, 64, 20, 37, 64, 3, 3, 1, 1, 1, 1),
    (2, 16, 11, 9, 24, 3, 3, 1, 1, 1, 1),
    (1, 32, 13, 17, 40, 3, 3, 2, 1, 1, 1),  # stride 2: the layout's strided copies
    (1, 32, 13, 17, 40, 3, 3, 1, 2, 2, 2),  # dilation, groups
    (1, 48, 13, 70, 33, 1, 1, 1, 0, 1, 1),  # 1x1, K tail (33), two tiles per row
    (1, 48, 13, 17, 33, 5, 3, 1, (2, 1), 1, 3),  # 5x3, 3 groups
    (1, 3, 13, 17, 64, 3, 3, 1, 1, 1, 1),  # RGB first conv
    (2, 8, 16, 16, 16, 4, 4, 4, 0, 1, 1),  # SFTNet's cond_in shape class: 4x4 stride 4
    (1, 40, 9, 21, 24, 1, 1, 1, 1, 1, 1),  # 1x1 with padding: ring rows read in place off the cache-line grid
    (1, 8, 6, 7, 16, 3, 3, 1, 17, 1, 1),  # padding wider than a cache line
    (1, 40, 15, 13, 72, 1, 1, 2, 0, 1, 1),  # 1x1 stride 2: output rows joined, each row's pixels gathered
    (2, 24, 7, 7, 20, 1, 1, 1, 0, 1, 1),  # 1x1 on a 7² map: 49 pixels in 4 vectors, not 7 rows
]


def _weight(case, pattern, density, seed=0):
    n, c, h, w, k, r, s, st, pd, dl, g = case
    gen = torch.Generator().manual_seed(seed)
    wt = torch.randn(k, c // g, r, s, generator=gen)
    if pattern == "unstructured":
        mask = torch.rand(wt.shape, generator=gen) < density
    elif pattern == "block":
        mask = masks.block(wt, 1 - density, 4)
    else:
        mask = masks.n_m(wt, 2, 4) if (c // g) % 4 == 0 else torch.rand(wt.shape, generator=gen) < density
    mask[0] = False  # an all-zero filter
    if c // g > 1:
        mask[:, 1] = False  # an empty input channel (a column of the GEMM view)
    return wt * mask


def _run(case, pattern, density, layout, backend, block=None, epilogue=True, act="leaky_relu", shuffle=1):
    n, c, h, w, k, r, s, st, pd, dl, g = case
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, h, w, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    wt = _weight(case, pattern, density)
    b = torch.randn(k, generator=gen) if epilogue else None
    exp = ref.sparse_conv2d(x, wt, b, st, pd, dl, g, pixel_shuffle=shuffle)
    res = torch.randn(exp.shape, generator=gen) if epilogue else None
    mod = (torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen)) if epilogue else None
    if layout == "channels_last" and epilogue:
        mod = tuple(t.contiguous(memory_format=torch.channels_last) for t in mod)
    act = act if epilogue else None
    y = sparse_conv2d(x, wt, b, st, pd, dl, g, activation=act, negative_slope=0.1, residual=res, modulation=mod,
                      block=block, pixel_shuffle=shuffle, backend=backend)
    exp = ref.sparse_conv2d(x, wt, b, st, pd, dl, g, act, 0.1, res, mod, shuffle)
    assert y.shape == exp.shape and y.dtype == torch.float32
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    depth = c // g * r * s
    atol, rtol = tolerance(torch.float32, depth, exp.abs().max().item())
    torch.testing.assert_close(y, exp, atol=atol, rtol=rtol)


def _sweep():
    """Every backend × case × pattern × layout; the Triton interpreter (seconds per call) on a subset."""
    out = []
    for b in BACKENDS:
        for case in CASES:
            for pattern in ("unstructured", "block", "n:m"):
                for layout in ("nchw", "channels_last"):
                    if b == "triton" and (case is CASES[0] or (pattern, layout) != ("block", "channels_last")):
                        continue
                    out.append(pytest.param(b, case, pattern, layout, id=f"{b}-{case}-{pattern}-{layout}"))
    return out


@pytest.mark.parametrize("backend,case,pattern,layout", _sweep())
def test_matches_masked_dense_reference(backend, case, pattern, layout):
    _run(case, pattern, 0.3, layout, backend)


@pytest.mark.parametrize("backend,block", [(b, k) for b in BACKENDS for k in (None, 1, 4)
                                           if b != "triton" or k is None])  # Triton blocks by its tile config
@pytest.mark.parametrize("density", [0.0, 0.05, 1.0])
def test_densities_and_forced_blocks(backend, density, block):
    _run(CASES[1], "unstructured", density, "channels_last", backend, block=block)
    _run(CASES[4], "unstructured", density, "nchw", backend, block=block, epilogue=False)


SHUFFLE_CASES = [  # PixelShuffle in the store: 64 = 4 × 16 channels per sub-pixel, 36 = 4 × 9 (masked), 27 = 9 × 3
    ((1, 16, 9, 21, 64, 3, 3, 1, 1, 1, 1), 2),
    ((2, 8, 7, 5, 36, 3, 3, 1, 1, 1, 1), 2),
    ((1, 12, 6, 19, 27, 1, 1, 1, 0, 1, 1), 3),
    ((1, 16, 7, 9, 32, 3, 3, 1, 1, 1, 2), 2),  # grouped: shuffled after the kernel (channels keep their groups)
]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@pytest.mark.parametrize("case,shuffle", SHUFFLE_CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("pattern", ["unstructured", "block"])
def test_pixel_shuffle_in_the_store(backend, case, shuffle, layout, pattern):
    _run(case, pattern, 0.3, layout, backend, shuffle=shuffle)


def test_pixel_shuffle_bad_factor():
    x, wt = torch.randn(1, 8, 5, 5), torch.randn(10, 8, 3, 3)  # 2² does not divide 10
    with pytest.raises(ValueError, match="pixel_shuffle"):
        sparse_conv2d(x, wt, None, 1, 1, pixel_shuffle=2)


@pytest.mark.skipif("triton" not in BACKENDS, reason="Triton not available")
def test_triton_kernel_visits_only_nonzero_blocks():
    from sft_kernels.runtime import triton as runtime_triton

    tsp = runtime_triton.load("sft_kernels.ops.sparse_conv2d.triton")
    cfg = tsp.config()
    w = torch.randn(4 * cfg["BLOCK_N"], 4 * cfg["BLOCK_K"], 3, 3)
    blocks = w.view(4, cfg["BLOCK_N"], 4, cfg["BLOCK_K"], 3, 3)
    keep = torch.rand(4, 1, 4, 1, 3, 3) < 0.25
    wb = (blocks * keep).view_as(w)
    visited, total = tsp.kept_blocks(wb)
    assert visited == int(keep.sum()) and total == 4 * 4 * 9
    assert tsp.kept_blocks(torch.zeros_like(w))[0] == 0


def _isas():
    if "cpu" not in BACKENDS:
        return []
    from sft_kernels.ops.sparse_conv2d import cpu
    order = ("avx512", "avx2", "generic")
    return [k for k in order if order.index(k) >= order.index(cpu.kernel())]


@pytest.mark.parametrize("isa", _isas())
def test_every_isa_matches_the_reference(isa):
    """Each ISA's tile kernels forced in a fresh process (SFT_KERNELS_SPARSE), on every case and pattern."""
    code = ("from sft_kernels.ops.sparse_conv2d import cpu\n"
            f"assert cpu.kernel() == {isa!r}, cpu.kernel()\n"
            "from tests.ops.sparse_conv2d.test_sparse_conv2d import CASES, _run\n"
            "for case in CASES:\n"
            "    for pattern in ('unstructured', 'block'):\n"
            "        for layout in ('nchw', 'channels_last'):\n"
            "            _run(case, pattern, 0.4, layout, 'cpu')\n"
            "        _run(case, pattern, 0.4, 'channels_last', 'cpu', act='relu6')\n"
            "from tests.ops.sparse_conv2d.test_sparse_conv2d import SHUFFLE_CASES\n"
            "for case, r in SHUFFLE_CASES:\n"
            "    for layout in ('nchw', 'channels_last'):\n"
            "        _run(case, 'unstructured', 0.4, layout, 'cpu', shuffle=r)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, SFT_KERNELS_SPARSE=isa),
                          capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("r", [1, 3])
def test_input_channels_pruned_in_whole_chunks(r):
    """Input channels 16-47 zero in every filter: the cpu kernel skips their channel chunks (16 channels each for
    3×3 on AVX-512); the rest still adds up (chunks after a skipped one accumulate onto the first's)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 64, 12, 35, generator=gen).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(72, 64, r, r, generator=gen) * (torch.rand(72, 64, r, r, generator=gen) < 0.3)
    wt[:, 16:48] = 0
    b = torch.randn(72, generator=gen)
    y = sparse_conv2d(x, wt, b, 1, r // 2, 1, 1, activation="relu", backend="cpu")
    exp = ref.sparse_conv2d(x, wt, b, 1, r // 2, 1, 1, "relu")
    atol, rtol = tolerance(torch.float32, 64 * r * r, exp.abs().max().item())
    torch.testing.assert_close(y, exp, atol=atol, rtol=rtol)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_large_output_stored_past_the_caches():
    """A channels-last output of 9 MB (over 1.5x a thread's L2 on the machines we know) goes out in streaming
    stores on AVX-512; with a residual and bias, and a ragged last tile (190 columns), it still matches."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 190, 190, generator=gen).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(64, 64, 3, 3, generator=gen) * (torch.rand(64, 64, 3, 3, generator=gen) < 0.1)
    b = torch.randn(64, generator=gen)
    res = torch.randn(1, 64, 190, 190, generator=gen).contiguous(memory_format=torch.channels_last)
    y = sparse_conv2d(x, wt, b, 1, 1, activation="relu", residual=res, backend="cpu")
    exp = ref.sparse_conv2d(x, wt, b, 1, 1, activation="relu", residual=res)
    atol, rtol = tolerance(torch.float32, 64 * 9, exp.abs().max().item())
    torch.testing.assert_close(y, exp, atol=atol, rtol=rtol)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("block", [1, 4])
def test_small_maps_split_output_channels_across_threads(threads, block):
    """A 7×7 map is one row of tiles (a 3×3 conv) or one tile (a 1×1 conv, its rows joined; a 3×3 conv from 14² at
    stride 2, or in blocks, its taps copied flat): the threads split the output channels (parts of whole 16-channel
    runs, the last one ragged: 72 channels) instead of idling; with bias, residual and both layouts."""
    gen = torch.Generator().manual_seed(6)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for r, size, stride in ((3, 7, 1), (1, 7, 1), (1, 14, 2), (3, 14, 2)):
            wt = torch.randn(72, 48, r, r, generator=gen) * (torch.rand(72, 48, r, r, generator=gen) < 0.3)
            b = torch.randn(72, generator=gen)
            for layout in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(1, 48, size, size, generator=gen).contiguous(memory_format=layout)
                res = torch.randn(1, 72, 7, 7, generator=gen).contiguous(memory_format=layout)
                y = sparse_conv2d(x, wt, b, stride, r // 2, activation="relu", residual=res, block=block,
                                  backend="cpu")
                exp = ref.sparse_conv2d(x, wt, b, stride, r // 2, activation="relu", residual=res)
                atol, rtol = tolerance(torch.float32, 48 * r * r, exp.abs().max().item())
                torch.testing.assert_close(y, exp, atol=atol, rtol=rtol)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_packer_finds_blocks_and_counts_nonzeros():
    from sft_kernels.ops.sparse_conv2d import cpu
    wb = _weight(CASES[0], "block", 0.3)
    info = cpu.info(wb)
    assert info["block"] == 4 and info["nonzeros"] == int((wb != 0).sum())
    wu = _weight(CASES[0], "unstructured", 0.3)
    info = cpu.info(wu)
    assert info["block"] == 1 and info["nonzeros"] == info["blocks"] == int((wu != 0).sum())
    assert cpu.info(wu, block=4)["block"] == 4


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_tap_groups_cover_every_mask():
    """An unstructured 3×3 weight's nonzeros grouped by (filter, channel, column): every subset of the three rows
    occurs (one group each), the groups hold each nonzero once, and the conv over them matches the reference."""
    from sft_kernels.ops.sparse_conv2d import cpu
    wt = torch.zeros(16, 24, 3, 3)
    for k in range(16):
        for c in range(24):
            for s in range(3):
                m = (k * 24 * 3 + c * 3 + s) % 8  # rows present: the bits of m (0: none)
                for r in range(3):
                    if m >> r & 1:
                        wt[k, c, r, s] = 0.5 + 0.01 * (k + c + r + s)
    info = cpu.info(wt, block=1)
    assert info["block"] == 1 and info["nonzeros"] == int((wt != 0).sum())
    assert info["tap_groups"] == int((wt != 0).any(dim=2).sum())
    assert cpu.info(torch.randn(8, 8, 1, 1))["tap_groups"] == 0
    x = torch.randn(1, 24, 19, 37).contiguous(memory_format=torch.channels_last)
    y = sparse_conv2d(x, wt, None, 1, 1, block=1, backend="cpu")
    exp = ref.sparse_conv2d(x, wt, None, 1, 1)
    atol, rtol = tolerance(torch.float32, 24 * 9, exp.abs().max().item())
    torch.testing.assert_close(y, exp, atol=atol, rtol=rtol)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="cpu backend not built")
def test_opcheck_and_compile():
    x = torch.randn(2, 16, 9, 11)
    wt = _weight(CASES[1], "unstructured", 0.3)
    torch.library.opcheck(torch.ops.sft.sparse_conv2d,
                          (x, wt, None, None, None, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.01, None, 1, "cpu"))
    f = torch.compile(lambda x: sparse_conv2d(x, wt, None, 1, 1, activation="relu"), fullgraph=True)
    torch.testing.assert_close(f(x), ref.sparse_conv2d(x, wt, None, 1, 1, activation="relu"), **tol("fp32"))


def test_bad_inputs():
    x, wt = torch.randn(1, 16, 8, 8), _weight(CASES[1], "unstructured", 0.3)
    with pytest.raises(ValueError, match="weight/input channel mismatch"):
        sparse_conv2d(x, wt[:, :8], None, 1, 1)
    with pytest.raises(ValueError, match="block must be None"):
        sparse_conv2d(x, wt, None, 1, 1, block=8)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        sparse_conv2d(x, wt, None, 1, 1, residual=torch.randn(1, 24, 3, 3))
    with pytest.raises(ValueError, match="shaped like the input"):
        sparse_conv2d(x, wt, None, 1, 1, modulation=(x[:, :3], x))
    with pytest.raises(TypeError, match="modulation must be a"):
        sparse_conv2d(x, wt, None, 1, 1, modulation=x)
    with pytest.raises(ValueError, match="unknown activation|activation must be"):
        sparse_conv2d(x, wt, None, 1, 1, activation="mish")
