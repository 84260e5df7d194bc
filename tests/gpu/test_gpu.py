"""GPU-only checks (skipped without a CUDA GPU): compiled Triton conv2d through the op library, in fp32,
fp16 and bf16, and a converted SFTNet against eager cuDNN. Run by benchmarks/gpu_check.sh."""
import pytest
import torch

from sft_kernels import backends, convert_, reference
from sft_kernels.models import SFTNet
from sft_kernels.ops import conv2d
from sft_kernels.testing import assert_close

pytestmark = pytest.mark.gpu

SHAPES = [(2, 5, 13, 11, 7, 3, 3, 1, 1, 1, 1), (1, 16, 9, 9, 8, 3, 3, 2, 1, 2, 2),
          (4, 64, 33, 33, 64, 3, 3, 1, 1, 1, 1), (2, 64, 32, 32, 256, 3, 3, 1, 1, 1, 1),
          (1, 32, 64, 64, 64, 1, 1, 1, 0, 1, 1)]


def _gpu_backends():
    return [b for b in ("triton", "cuda") if backends.supports(b, "conv2d", "cuda", torch.float16)]


@pytest.mark.parametrize("backend", _gpu_backends() or ["triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("cl", [False, True])
def test_gpu_conv2d(backend, dtype, shape, cl):
    if not backends.supports(backend, "conv2d", "cuda", dtype):
        pytest.skip(f"{backend} has no {dtype} conv2d")
    n, c, h, w, k, r, s, st, pd, dl, g = shape
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
    wt = torch.randn(k, c // g, r, s, device="cuda", dtype=dtype)
    b = torch.randn(k, device="cuda", dtype=dtype)
    res = torch.randn(n, k, (h + 2 * pd - dl * (r - 1) - 1) // st + 1, (w + 2 * pd - dl * (s - 1) - 1) // st + 1,
                      device="cuda", dtype=dtype)
    xin = x.contiguous(memory_format=torch.channels_last) if cl else x
    y = conv2d(xin, wt, b, st, pd, dl, g, activation="leaky_relu", negative_slope=0.2, residual=res, backend=backend)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g, "leaky_relu", 0.2, res.double())
    assert_close(y, ref, k=c // g * r * s)


@pytest.mark.parametrize("backend", _gpu_backends() or ["triton"])
def test_gpu_sftnet_converted_matches_eager(backend):
    model = SFTNet("pytorch").reset_parameters_(seed=0).cuda().half().eval()
    x = torch.rand(1, 3, 32, 32, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x).float()
        convert_(model, backend=backend)
        out = model(x).float()
    err = (out - expected).abs().max().item()
    assert err < 2e-2 * max(1.0, expected.abs().max().item()), err


@pytest.mark.parametrize("backend", _gpu_backends() or ["triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gpu_conv2d_pixel_shuffle_store(backend, dtype):
    if not backends.supports(backend, "conv2d", "cuda", dtype):
        pytest.skip(f"{backend} has no {dtype} conv2d")
    x = torch.randn(2, 64, 17, 19, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(256, 64, 3, 3, device="cuda", dtype=dtype), torch.randn(256, device="cuda", dtype=dtype)
    res = torch.randn(2, 64, 34, 38, device="cuda", dtype=dtype)
    y = conv2d(x, w, b, padding=1, activation="relu", residual=res, pixel_shuffle=2, backend=backend)
    ref = reference.conv2d(x.double(), w.double(), b.double(), padding=1, activation="relu", residual=res.double(),
                           pixel_shuffle=2)
    assert_close(y, ref, k=576)


needs_cuda_ext = pytest.mark.skipif(not backends.supports("cuda", "conv2d", "cuda", torch.float16),
                                    reason="CUDA extension not built")


def _cuda_configs():
    try:
        from sft_kernels.ops.conv2d import cuda as cuda_conv

        return [name for name, _ in cuda_conv.tile_configs()]
    except Exception:  # noqa: BLE001 - extension missing: the test below is skipped anyway
        return ["none"]


@needs_cuda_ext
@pytest.mark.parametrize("config", _cuda_configs())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_cuda_every_tile_config(config, dtype, monkeypatch):
    """Each tile config, pinned, on a shape with tails in M, N and GEMM-K (and a 3-channel padded input)."""
    monkeypatch.setenv("SFT_KERNELS_CUDA_CONFIG", config)
    for c, k in ((24, 72), (3, 40)):
        x = torch.randn(2, c, 19, 23, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(k, c, 3, 3, device="cuda", dtype=dtype), torch.randn(k, device="cuda", dtype=dtype)
        y = conv2d(x, w, b, padding=1, activation="relu", backend="cuda")
        assert_close(y, reference.conv2d(x.double(), w.double(), b.double(), padding=1, activation="relu"), k=c * 9)


@pytest.mark.parametrize("backend", _gpu_backends() or ["triton"])
def test_gpu_compile_for_inference_matches_eager(backend):
    from sft_kernels.models import compile_for_inference

    model = SFTNet("pytorch").reset_parameters_(seed=0).cuda().half().eval()
    x = torch.rand(2, 3, 24, 24, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x).float()
    convert_(model, backend=backend)
    run = compile_for_inference(model, x)
    for _ in range(2):  # replays reuse the captured graph and static buffers
        out = run(x.clone()).float()
        err = (out - expected).abs().max().item()
        assert err < 2e-2 * max(1.0, expected.abs().max().item()), err
    with pytest.raises(ValueError, match="shape"):
        run(torch.rand(1, 3, 24, 24, device="cuda", dtype=torch.float16))


@pytest.mark.parametrize("backend", _gpu_backends() or ["triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_conv2d_modulated_input(backend, dtype):
    """ops.conv2d(modulation=(scale, shift)): Triton fuses it into its A loads; cuda modulates in a pass."""
    x, scale, shift = (torch.randn(2, 64, 21, 19, device="cuda", dtype=dtype).contiguous(
        memory_format=torch.channels_last) for _ in range(3))
    w, b = torch.randn(64, 64, 3, 3, device="cuda", dtype=dtype) / 24, torch.randn(64, device="cuda", dtype=dtype)
    y = conv2d(x, w, b, padding=1, activation="relu", modulation=(scale, shift), backend=backend)
    ref = reference.conv2d(x.double(), w.double(), b.double(), padding=1, activation="relu",
                           modulation=(scale.double(), shift.double()))
    assert_close(y, ref, k=576)


QSHAPES = [(2, 5, 13, 11, 33, 3, 1, 1), (1, 64, 33, 35, 64, 3, 1, 1), (2, 64, 32, 32, 256, 3, 2, 1),
           (1, 32, 64, 64, 64, 1, 1, 0), (16, 64, 24, 24, 64, 3, 1, 1)]


@pytest.mark.parametrize("shape", [s + (1,) for s in QSHAPES] + [(2, 48, 17, 15, 36, 3, 1, 3, 3)], ids=str)
@pytest.mark.parametrize("out_scale", [0.0, 0.05])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_qconv2d_exact(shape, out_scale, backend):
    """The compiled int8 convs (the CUDA tensor-core kernel, Triton) against the integer reference: float outputs
    to the epilogue's rounding, uint8 outputs within one step. The last shape is grouped (3 groups of 16 channels),
    which the CUDA kernel runs itself and Triton hands to the reference."""
    from sft_kernels.ops import qconv2d
    from sft_kernels.ops.qconv2d import reference as qref
    if not backends.supports(backend, "qconv2d", "cuda", torch.uint8):
        pytest.skip(f"no {backend} backend here")
    n, c, h, w, k, r, st, pd, groups = shape
    g = torch.Generator().manual_seed(0)
    xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    wq = torch.randint(-127, 128, (k, c // groups, r, r), dtype=torch.int8, generator=g)
    ws, b = torch.rand(k, generator=g) * 0.01 + 0.001, torch.randn(k, generator=g)
    res = torch.randn(n, k, (h + 2 * pd - r) // st + 1, (w + 2 * pd - r) // st + 1, generator=g)
    y = qconv2d(xq.cuda().contiguous(memory_format=torch.channels_last), wq.cuda(), ws.cuda(), b.cuda(), st, pd, 1,
                groups, input_scale=0.02, input_zero_point=77, activation="relu", residual=res.cuda(),
                out_scale=out_scale, out_zero_point=5, backend=backend).cpu()
    e = qref.qconv2d(xq, 0.02, 77, wq, ws, b, res, st, pd, 1, groups, "relu", 0.01, out_scale, 5)
    if out_scale:
        assert (y.int() - e.int()).abs().max() <= 1
    else:
        assert (y.double() - e).abs().max() <= 1e-5 * e.abs().max()


@pytest.mark.parametrize("shape", QSHAPES, ids=str)
@pytest.mark.parametrize("backend,dtype", [("triton", torch.float16), ("triton", torch.float32),
                                           ("cuda", torch.float16), ("cuda", torch.bfloat16)])
def test_gpu_sparse_conv2d(shape, backend, dtype):
    """The sparse convs (Triton; the CUDA tensor-core kernel with block lists, and on 2:4 weights the sparse
    tensor-core kernel) against the masked dense conv in float64, block-pruned, unstructured and 2:4 weights (where
    the channels allow), with bias, activation and residual."""
    from sft_kernels.ops import sparse_conv2d
    from sft_kernels.transforms.prune import masks
    if not backends.supports(backend, "sparse_conv2d", "cuda", dtype):
        pytest.skip(f"no {backend} backend here")
    n, c, h, w, k, r, st, pd = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(k, c, r, r, generator=g)
    b = torch.randn(k, generator=g)
    for m in (masks.block(wt, 0.8, 16), masks.unstructured(wt, 0.7)) + ((masks.n_m(wt, 2, 4),) if c % 4 == 0 else ()):
        ws = wt * m
        ref = torch.nn.functional.conv2d(x.double(), ws.double(), b.double(), st, pd).relu()
        res = torch.randn(ref.shape, generator=g)
        y = sparse_conv2d(x.cuda().to(dtype).contiguous(memory_format=torch.channels_last), ws.cuda().to(dtype),
                          b.cuda().to(dtype), st, pd, activation="relu", residual=res.cuda().to(dtype),
                          backend=backend).cpu()
        assert_close(y, ref + res.double(), k=c * r * r)


@pytest.mark.parametrize("shape", QSHAPES[1:], ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_sparse24_kernel_itself(shape, dtype):
    """2:4 weights on the sparse tensor-core kernel (mma.sp), with the block-list kernel barred, every tile config
    (each has its own metadata layout), against the masked dense conv in float64."""
    from sft_kernels.ops.conv2d import cuda as cuda_conv
    from sft_kernels.ops.sparse_conv2d import cuda as sparse_cuda
    from sft_kernels.transforms.prune import masks
    if not backends.supports("cuda", "sparse_conv2d", "cuda", dtype):
        pytest.skip("no cuda backend here")
    n, c, h, w, k, r, st, pd = shape
    g = torch.Generator().manual_seed(1)
    x, wt, b = torch.randn(n, c, h, w, generator=g), torch.randn(k, c, r, r, generator=g), torch.randn(k, generator=g)
    wt = wt * masks.n_m(wt, 2, 4)
    ref = torch.nn.functional.conv2d(x.double(), wt.double(), b.double(), st, pd)
    ref = torch.nn.functional.leaky_relu(ref, 0.1)
    xc = x.cuda().to(dtype).contiguous(memory_format=torch.channels_last)
    for config, (_, (bm, _, bk, *_)) in enumerate(cuda_conv.tile_configs("sparse24")):
        y = sparse_cuda.sparse_conv2d(xc, wt.cuda().to(dtype), b.cuda().to(dtype), None, (st, st), (pd, pd), (1, 1),
                                      1, "leaky_relu", 0.1, kernel=lambda *a: pytest.fail("took the block lists"),
                                      kernel24=torch.ops.sft_cuda.sparse24_conv2d_nhwc, tile24=(config, bm, bk))
        assert_close(y.cpu(), ref, k=c * r * r)


@pytest.mark.parametrize("shape", [(2, 64, 33, 31, 1, 128, 3, 1), (1, 96, 28, 28, 1, 24, 3, 2),
                                   (2, 20, 17, 9, 2, 40, 5, 1)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_separable_conv2d(shape, dtype, backend):
    """The fused separable convs (Triton compiled, not interpreted: the bf16 / fp16 dot of the depthwise tile runs
    here only; the CUDA kernel) against the two-conv float64 reference, with both activations and a residual."""
    import torch.nn.functional as F

    from sft_kernels.ops import separable_conv2d
    if not backends.supports(backend, "separable_conv2d", "cuda", dtype):
        pytest.skip(f"no {backend} backend here")
    n, c, h, w, m, k, r, st = shape
    g = torch.Generator().manual_seed(0)
    x, dw, pw = torch.randn(n, c, h, w, generator=g), torch.randn(c * m, 1, r, r, generator=g), torch.randn(
        k, c * m, 1, 1, generator=g)
    dwb, pwb = torch.randn(c * m, generator=g), torch.randn(k, generator=g)
    t = [v.to(dtype) for v in (x, dw, pw, dwb, pwb)]
    ref = F.conv2d(F.relu(F.conv2d(t[0].double(), t[1].double(), t[3].double(), st, r // 2, groups=c)),
                   t[2].double(), t[4].double())
    res = torch.randn(ref.shape, generator=g).to(dtype)
    ref = F.leaky_relu(ref, 0.1) + res.double()
    y = separable_conv2d(t[0].cuda().contiguous(memory_format=torch.channels_last), *[v.cuda() for v in t[1:]], st,
                         r // 2, mid_activation="relu", activation="leaky_relu", negative_slope=0.1,
                         residual=res.cuda(), backend=backend).cpu()
    assert_close(y, ref, k=r * r + c * m)


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("out_dtype", [torch.int8, torch.bfloat16])
def test_gpu_qconv2d_other_types_and_shuffle(backend, out_dtype):
    """int8 / bfloat16 outputs and a uint8 residual from the compiled epilogues (int8: the uint8 output moved by 128
    byte for byte; bfloat16: the float32 output rounded), and the PixelShuffle store, against the same kernel's
    default types."""
    from sft_kernels.ops import qconv2d
    if not backends.supports(backend, "qconv2d", "cuda", torch.uint8):
        pytest.skip(f"no {backend} backend here")
    g = torch.Generator().manual_seed(1)
    xq = torch.randint(0, 256, (2, 32, 17, 15), dtype=torch.uint8, generator=g).cuda()
    wq = torch.randint(-127, 128, (64, 32, 3, 3), dtype=torch.int8, generator=g).cuda()
    ws, b = (torch.rand(64, generator=g) * 0.01 + 0.001).cuda(), torch.randn(64, generator=g).cuda()
    res = torch.randint(0, 256, (2, 64, 17, 15), dtype=torch.uint8, generator=g).cuda()
    kw = dict(input_scale=0.02, input_zero_point=77, activation="relu", backend=backend)
    for shuffle in (1, 2):
        r = dict(residual=res, residual_quant=(0.03, 120)) if shuffle == 1 else {}
        rf = dict(residual=(res.float() - 120) * 0.03) if shuffle == 1 else {}
        if out_dtype == torch.int8:
            y = qconv2d(xq, wq, ws, b, 1, 1, **kw, **r, out_scale=0.05, out_zero_point=-3, out_dtype=torch.int8,
                        pixel_shuffle=shuffle)
            u = qconv2d(xq, wq, ws, b, 1, 1, **kw, **rf, out_scale=0.05, out_zero_point=125, pixel_shuffle=shuffle)
            assert y.dtype == torch.int8 and torch.equal(y.int(), u.int() - 128)
        else:
            y = qconv2d(xq, wq, ws, b, 1, 1, **kw, **r, out_dtype=torch.bfloat16, pixel_shuffle=shuffle)
            f = qconv2d(xq, wq, ws, b, 1, 1, **kw, **rf, pixel_shuffle=shuffle)
            assert y.dtype == torch.bfloat16 and torch.equal(y, f.to(torch.bfloat16))


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_separable_pixel_shuffle_store(backend):
    """The separable kernels' PixelShuffle epilogue (residual read at the shuffled place) against PixelShuffle of
    the float64 reference."""
    import torch.nn.functional as F

    from sft_kernels.ops import separable_conv2d
    if not backends.supports(backend, "separable_conv2d", "cuda", torch.float32):
        pytest.skip(f"no {backend} backend here")
    g = torch.Generator().manual_seed(2)
    x, dw, pw = torch.randn(2, 16, 19, 13, generator=g), torch.randn(16, 1, 3, 3, generator=g), torch.randn(
        64, 16, 1, 1, generator=g)
    res = torch.randn(2, 16, 38, 26, generator=g)
    ref = F.pixel_shuffle(F.conv2d(F.relu(F.conv2d(x.double(), dw.double(), None, 1, 1, groups=16)),
                                   pw.double()), 2) + res.double()
    y = separable_conv2d(x.cuda().contiguous(memory_format=torch.channels_last), dw.cuda(), pw.cuda(), None, None, 1,
                         1, mid_activation="relu", residual=res.cuda(), pixel_shuffle=2, backend=backend).cpu()
    assert_close(y, ref, k=9 + 16)
