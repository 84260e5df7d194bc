"""AddressSanitizer run of the C++ kernels (`make asan`): builds csrc/ with -fsanitize=address into a scratch
directory, loads it instead of sft_kernels._C and runs conv2d (direct, Winograd, pixel shuffle, groups, NCHW,
channels_last, thin ends, SFT modulation; bf16 on AMX, its SFT modulation and layer), ABC Strassen, the fused
inverted residual, the fused separable conv, the int8 (dense and depthwise) and sparse convs and matmul
against float64, with every micro-kernel (SFT_KERNELS_ISA) and int8 kernel (SFT_KERNELS_INT8). Needs the process
to start with libasan preloaded (the Makefile does that);
not part of the default test run (it is slow to build).
"""
import glob
import os
import sys

import torch
import torch.nn.functional as F

BUILD = os.environ.get("SFT_KERNELS_ASAN_DIR", "/tmp/sft_kernels_asan")
CASES = [  # (n, c, h, w, k, r, stride, pad, dilation, groups, algorithm, pixel_shuffle)
    (2, 5, 13, 11, 7, 3, 1, 1, 1, 1, 1, 1), (1, 16, 9, 9, 8, 3, 2, 1, 2, 2, 1, 1),
    (1, 64, 12, 12, 256, 3, 1, 1, 1, 1, 2, 1),
    (1, 16, 8, 8, 256, 3, 1, 1, 1, 1, 2, 2), (3, 24, 5, 5, 70, 3, 1, 1, 1, 1, 2, 1),
    (1, 20, 6, 6, 17, 3, 1, 2, 1, 1, 2, 1),
    (1, 64, 10, 10, 64, 3, 1, 1, 1, 1, 0, 2), (2, 3, 17, 15, 33, 3, 1, 1, 1, 1, 0, 1),
    (1, 16, 7, 9, 36, 3, 1, 1, 1, 1, 2, 3),
    (1, 8, 12, 12, 4, 4, 4, 0, 1, 1, 1, 1), (1, 12, 10, 9, 6, 1, 1, 0, 1, 3, 1, 1),
    (1, 16, 7, 9, 36, 3, 1, 1, 1, 1, 3, 1), (1, 16, 8, 8, 256, 3, 1, 1, 1, 1, 3, 2),
    (3, 24, 5, 5, 70, 3, 1, 1, 1, 1, 3, 1),
    # dilated Winograd over sub-grids of unequal sizes, and over an image smaller than its rate
    (2, 20, 17, 9, 24, 3, 1, 3, 3, 1, 2, 1), (1, 16, 3, 3, 16, 3, 1, 6, 6, 1, 2, 1),
    # taps that read only padding dropped (a view of the weight): auto, and direct with stride 2
    (1, 16, 8, 8, 16, 3, 1, 12, 12, 1, 0, 1), (1, 8, 5, 9, 8, 3, 2, 6, 6, 1, 1, 1),
    # thin ends (direct AVX-512 kernels under SFT_KERNELS_ISA=avx512)
    (2, 3, 11, 13, 64, 3, 1, 1, 1, 1, 0, 1), (1, 2, 6, 7, 80, 3, 2, 2, 1, 1, 1, 1),
    (2, 32, 10, 9, 3, 3, 1, 2, 2, 1, 0, 1),
    (1, 16, 7, 8, 4, 1, 1, 0, 1, 1, 1, 1), (2, 32, 9, 7, 48, 1, 1, 0, 1, 1, 1, 1),
    (1, 24, 9, 9, 16, 1, 2, 0, 1, 1, 0, 1),
    # 1×1 convs the GEMM path runs with the input rows read in place (avx512)
    (2, 136, 9, 11, 40, 1, 1, 0, 1, 1, 0, 1), (1, 32, 8, 7, 256, 1, 1, 0, 1, 1, 0, 1),
    (1, 520, 5, 7, 40, 1, 1, 0, 1, 1, 0, 1),  # deeper than 256: in place where its pixels spread over L1 sets
    # direct stride-1 convs over a padded input copy (avx512; its asm reads are not instrumented, the copy is)
    (2, 16, 9, 13, 40, 3, 1, 1, 1, 1, 1, 1), (1, 8, 5, 7, 33, 5, 1, 2, 1, 1, 1, 1),
    (2, 24, 6, 6, 20, 2, 1, 0, 1, 1, 1, 1),
    # a 7×7 image: one band, its 100 output channels split between the threads; weights past 1 MB: implicit GEMM
    (1, 16, 7, 7, 100, 3, 1, 1, 1, 1, 1, 1), (1, 256, 5, 5, 256, 3, 1, 1, 1, 1, 1, 1),
    # few-channel convs from stacked input rows (avx512): an RGB 7×7 stride-2 stem, a strided 16-channel conv; the
    # column form's transposed copy built row by row (3 and 2 channels, odd sizes)
    (1, 3, 20, 18, 40, 7, 2, 3, 1, 1, 1, 1), (2, 16, 11, 13, 40, 3, 2, 1, 1, 1, 1, 1),
    (2, 3, 9, 13, 32, 3, 2, 1, 1, 1, 1, 1), (1, 2, 7, 5, 16, 3, 1, 1, 1, 1, 1, 1),
    # ... and read in place, rows as taps (no padding): one whole 14-pixel tile and a 2-pixel tail per row
    (2, 8, 9, 64, 40, 4, 4, 0, 1, 1, 1, 1),
    # depthwise path: a masked 17-channel tail, stride 2, a channel multiplier of 2 (scalar rows)
    (2, 17, 9, 11, 17, 3, 1, 1, 1, 17, 1, 1), (1, 32, 12, 10, 32, 3, 2, 1, 2, 32, 1, 1),
    (1, 6, 7, 9, 12, 3, 1, 1, 1, 6, 1, 1),
    # few channels per group (grouped path, avx512): 4 per group with a 12-channel tail, 8 at stride 2 (3-wide rows),
    # 2 dilated (the general loop), 32 with a 5×5 kernel
    (2, 12, 9, 11, 12, 3, 1, 1, 1, 3, 1, 1), (1, 40, 8, 17, 40, 3, 2, 1, 1, 5, 1, 1),
    (1, 32, 9, 8, 32, 3, 1, 2, 2, 16, 1, 1), (1, 64, 6, 9, 64, 5, 1, 2, 1, 2, 1, 1),
    # depthwise 7×7 and 5×5 rows (each input vector loaded once for 7 pixels): edge groups, stride 2
    (1, 40, 11, 19, 40, 7, 1, 3, 1, 40, 1, 1), (2, 24, 9, 12, 24, 5, 2, 2, 1, 24, 1, 1),
]


def build():
    from torch.utils.cpp_extension import load

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(BUILD, exist_ok=True)  # load() dlopens the result too: run this with libasan preloaded
    sources = [f"{root}/csrc/register.cpp"] + sorted(glob.glob(f"{root}/csrc/cpu/**/*.cpp", recursive=True))
    # load() names each object after its source's base name alone
    names = [os.path.basename(s) for s in sources]
    assert len(set(names)) == len(names), f"two C++ sources share a base name: {sorted(names)}"
    load(name="_C", sources=sources,
         extra_include_paths=[f"{root}/csrc"], build_directory=BUILD, is_python_module=False,
         extra_cflags=["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer", "-fopenmp", "-std=c++17"],
         extra_ldflags=["-fsanitize=address", "-fopenmp"])


def run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_C", os.path.join(BUILD, "_C.so"))
    ext = importlib.util.module_from_spec(spec)  # the library as a Python module too: sft.matmul's eager entry
    spec.loader.exec_module(ext)
    ops = torch.ops.sft_cpu
    torch.manual_seed(0)
    for i, (n, c, h, w, k, r, st, pd, dl, g, alg, sh) in enumerate(CASES):
        if i % 3 < 2:  # SiLU (code 4) / GELU (code 6): the vector exp (and erf) in each path's store
            x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
            wt, b = torch.randn(k, c // g, r, r), torch.randn(k)
            act, code = (F.silu, 4) if i % 3 == 0 else (F.gelu, 6)
            ref = act(F.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g))
            ref = F.pixel_shuffle(ref, sh) if sh > 1 else ref
            y = ops.conv2d(x, wt, b, [st, st], [pd, pd], [dl, dl], g, code, 0.0, None, alg, sh)
            assert (y.double() - ref).abs().max().item() < 1e-2, (code, i)
        for channels_last in (False, True):
            x = torch.randn(n, c, h, w)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            wt, b = torch.randn(k, c // g, r, r), torch.randn(k)
            ref = F.relu(F.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g))
            ref = F.pixel_shuffle(ref, sh) if sh > 1 else ref
            res = torch.randn(ref.shape)
            y = ops.conv2d(x, wt, b, [st, st], [pd, pd], [dl, dl], g, 1, 0.0, res, alg, sh)
            err = (y.double() - ref - res.double()).abs().max().item()
            assert err < 1e-2, (n, c, h, w, k, r, st, pd, dl, g, alg, sh, channels_last, err)
    for k in (1, 7, 576):  # the micro-kernel ceiling's own panels (odd depth: padded to whole k-blocks)
        assert ops.ukernel_ceiling_gflops(k, 3) > 0
    # weights trusted by version, then freed: a later tensor at the same address meets an expired entry
    xt = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    for mode in (0, 1, 2):
        ops.set_weight_check(mode)
        for _ in range(3):
            wt = torch.randn(16, 8, 3, 3).contiguous(memory_format=torch.channels_last)
            ops.trust_weight(wt, True)
            y = ops.conv2d(xt, wt, None, [1, 1], [1, 1], [1, 1], 1, 0, 0.0, None, 1, 1)
            assert (y.double() - F.conv2d(xt.double(), wt.double(), padding=1)).abs().max().item() < 1e-3
            del wt, y
    ops.set_weight_check(0)
    for c, k, alg in [(16, 24, 1), (16, 24, 2), (5, 7, 1), (64, 64, 0)]:  # SFT modulation fused into packing
        x, sc, sf = (torch.randn(1, c, 9, 11).contiguous(memory_format=torch.channels_last) for _ in range(3))
        wt = torch.randn(k, c, 3, 3)
        y = ops.conv2d(x, wt, None, [1, 1], [1, 1], [1, 1], 1, 0, 0.0, None, alg, 1, sc, sf)
        ref = F.conv2d(x.double() * (sc.double() + 1) + sf.double(), wt.double(), padding=1)
        assert (y.double() - ref).abs().max().item() < 1e-2, (c, k, alg)
    # K = 32 / 64 / 256: row-major A read in place (full tiles), tails packed; a row pitch wider than K too
    for m, kk, nn in [(37, 53, 29), (300, 257, 31), (1, 1, 1), (130, 129, 131), (100, 32, 40), (47, 64, 33),
                      (29, 256, 70), (45, 1000, 70), (40, 576, 70), (64, 512, 200),  # deep K, several passes
                      (5, 40, 300), (1, 8, 517), (64, 1000, 200)]:  # at least as wide as tall: column split
        a, bm = torch.randn(1, m, kk), torch.randn(1, kk, nn)
        assert (ops.matmul(a, bm).double() - a.double() @ bm.double()).abs().max() < 1e-3
        a = torch.randn(1, m, kk + 8)[..., :kk]
        assert (ops.matmul(a, bm).double() - a.double() @ bm.double()).abs().max() < 1e-3
        assert (ext.matmul_eager(a[0], bm[0]).double() - a[0].double() @ bm[0].double()).abs().max() < 1e-3
    # ABC Strassen: fused sums and +-C stores; the last, k = 650 > 2.5·KC, staged products
    for m, kk, nn in [(2, 2, 2), (30, 46, 66), (130, 258, 98), (30, 1300, 66)]:
        a, bm = torch.randn(m, kk), torch.randn(kk, nn)
        assert (ops.strassen_abc(a, bm).double() - a.double() @ bm.double()).abs().max() < 1e-3
    if ops.conv2d_bf16_available():  # bf16 (AMX or vectors): flat and row blocks, bands, tails, shuffle, modulation,
        for (n, c, h, w, k, r, st, pd, dl, sh) in [  # slices; 7-pixel rows (vectors compute only the stored rows)
                (2, 20, 13, 11, 40, 3, 1, 1, 1, 1), (1, 48, 19, 21, 70, 5, 2, 2, 1, 1),
                (1, 64, 14, 14, 48, 3, 2, 1, 1, 1),
                (1, 32, 9, 9, 33, 3, 1, 2, 2, 1), (1, 64, 150, 37, 40, 3, 1, 1, 1, 1),
                (1, 8, 17, 70, 24, 4, 4, 0, 1, 1), (1, 64, 9, 12, 256, 3, 1, 1, 1, 2),
                (1, 100, 7, 7, 96, 1, 1, 0, 1, 1), (1, 16, 5, 40, 288, 3, 1, 1, 1, 3)]:
            # channel slices (pixel pitch wider than C), the modulation maps strided alike (fused into the fill)
            x, sc, sf = (torch.randn(n, c + 8, h, w).contiguous(memory_format=torch.channels_last)[:, 8:]
                         for _ in range(3))
            sc.mul_(0.1)
            wt, b = torch.randn(k, c, r, r) * 0.1, torch.randn(k)
            xm = x * (sc + 1) + sf
            ref = F.relu(F.conv2d(xm.bfloat16().double(), wt.bfloat16().double(), b.double(), st, pd, dl))
            ref = F.pixel_shuffle(ref, sh) if sh > 1 else ref
            res = torch.randn(ref.shape).contiguous(memory_format=torch.channels_last)
            y = ops.conv2d(x, wt, b, [st, st], [pd, pd], [dl, dl], 1, 1, 0.0, res, 4, sh, sc, sf)
            assert (y.double() - ref - res.double()).abs().max().item() < 1e-2, (n, c, h, w, k, r, st, sh)
        # bf16 Winograd (algorithm 5): several blocks and a short last one, channel tails, a half panel, padding 0 / 2,
        # shuffle, modulation of channel slices, residual
        for (n, c, h, w, k, pd, sh) in [(2, 20, 13, 11, 40, 1, 1), (1, 64, 40, 46, 64, 1, 1), (1, 33, 7, 30, 64, 0, 1),
                                        (1, 64, 20, 21, 3, 2, 1), (1, 64, 9, 12, 256, 1, 2), (1, 16, 1, 1, 16, 1, 1)]:
            x, sc, sf = (torch.randn(n, c + 8, h, w).contiguous(memory_format=torch.channels_last)[:, 8:]
                         for _ in range(3))
            sc.mul_(0.1)
            wt, b = torch.randn(k, c, 3, 3) / (9 * c) ** 0.5, torch.randn(k)
            ref = F.relu(F.conv2d((x * (sc + 1) + sf).double(), wt.double(), b.double(), 1, pd))
            ref = F.pixel_shuffle(ref, sh) if sh > 1 else ref
            res = torch.randn(ref.shape).contiguous(memory_format=torch.channels_last)
            y = ops.conv2d(x, wt, b, [1, 1], [pd, pd], [1, 1], 1, 1, 0.0, res, 5, sh, sc, sf)
            err = (y.double() - ref - res.double()).abs().max().item() / ref.abs().max().item()
            assert err < 0.1, (n, c, h, w, k, pd, sh, err)
        assert ops.conv2d_bf16_peak_gflops() > 0
        for (c, k, r, st) in [(64, 256, 2, 1), (20, 40, 1, 2), (64, 3, 1, 1)]:  # bf16 maps in and out (hand-over)
            x = torch.randn(1, c, 9, 13).to(torch.bfloat16)
            wt, b = torch.randn(k, c, 3, 3) * 0.1, torch.randn(k)
            y = ops.conv2d(x, wt, b, [st, st], [1, 1], [1, 1], 1, 1, 0.0, None, 4, r, None, None, torch.bfloat16)
            ref = F.relu(F.conv2d(x.double(), wt.bfloat16().double(), b.double(), st, 1))
            ref = F.pixel_shuffle(ref, r) if r > 1 else ref
            assert (y.double() - ref).abs().max().item() < 5e-2, (c, k, r, st)
        for (n, k, cs, ct, h, w) in [(1, 64, 32, 32, 9, 7), (2, 40, 12, 40, 5, 11), (1, 16, 8, 8, 3, 3)]:
            x = torch.randn(n, k, h, w)
            both = torch.randn(n, cs + ct, h, w).contiguous(memory_format=torch.channels_last)
            ms, mt = both[:, :cs], both[:, cs:]
            ws, wt, bs, bt = torch.randn(k, cs, 1, 1), torch.randn(k, ct, 1, 1), torch.randn(k), torch.randn(k)
            y = ops.sft_modulation_bf16(x, ms, ws, bs, mt, wt, bt)
            sc = F.conv2d(ms.bfloat16().double(), ws.bfloat16().double(), bs.double())
            sh = F.conv2d(mt.bfloat16().double(), wt.bfloat16().double(), bt.double())
            assert (y.double() - (x.double() * (sc + 1) + sh)).abs().max().item() < 1e-2, (n, k, cs, ct)
            cond = torch.randn(n, 20, h, w)  # the whole layer from a condition map (NCHW: copied to rows)
            w0s, w0t, b0s, b0t = torch.randn(cs, 20, 1, 1), torch.randn(ct, 20, 1, 1), torch.randn(cs), torch.randn(ct)
            y = ops.sft_layer_bf16(x, cond, w0s, b0s, w0t, b0t, ws, bs, wt, bt, 0.1)
            ms = F.leaky_relu(F.conv2d(cond.bfloat16().double(), w0s.bfloat16().double(), b0s.double()), 0.1)
            mt = F.leaky_relu(F.conv2d(cond.bfloat16().double(), w0t.bfloat16().double(), b0t.double()), 0.1)
            sc = F.conv2d(ms.float().bfloat16().double(), ws.bfloat16().double(), bs.double())
            sh = F.conv2d(mt.float().bfloat16().double(), wt.bfloat16().double(), bt.double())
            assert (y.double() - (x.double() * (sc + 1) + sh)).abs().max().item() < 5e-2, (n, k, cs, ct)
    # Fused separable conv: masked channel tails, multipliers (scalar depthwise), strides, residual, tile tails;
    # chunks of narrow rows with tiles across rows, K slices (C > KC), edge columns read as zeros, 1-pixel rows
    for (n, c, h, w, m, k, st, pd) in [(1, 17, 9, 15, 1, 33, 1, 1), (2, 64, 13, 7, 1, 40, 2, 1),
                                       (1, 6, 5, 5, 2, 3, 1, 2), (1, 3, 1, 1, 1, 1, 1, 1),
                                       (1, 300, 7, 7, 1, 40, 1, 1), (1, 24, 6, 5, 1, 16, 2, 1),
                                       (2, 520, 5, 1, 1, 9, 1, 1)]:
        x = torch.randn(n, c, h, w)
        dw, pw, pb = torch.randn(c * m, 1, 3, 3), torch.randn(k, c * m, 1, 1), torch.randn(k)
        mid = F.relu6(F.conv2d(x.double(), dw.double(), None, st, pd, 1, c))
        ref = F.conv2d(mid, pw.double(), pb.double())
        res = torch.randn(ref.shape)
        y = ops.separable_conv2d(x, dw, None, pw, pb, [st, st], [pd, pd], [1, 1], 3, 0, 0.0, res)  # relu6 between
        assert (y.double() - ref - res.double()).abs().max().item() < 1e-3, (c, m, k)
    # ... with PixelShuffle(r) in the store (sub-pixel runs of whole panels: K = 256, 288), K slices, a partial last
    # tile of a row, one-pixel rows; and through the shuffle after the conv (K = 36: runs of 9 channels)
    for (n, c, h, w, k, r) in [(2, 16, 7, 19, 256, 2), (1, 300, 5, 6, 288, 3), (1, 24, 9, 1, 128, 2),
                               (1, 8, 5, 6, 36, 2)]:
        x = torch.randn(n, c, h, w)
        dw, pw = torch.randn(c, 1, 3, 3), torch.randn(k, c, 1, 1)
        order = torch.arange(k).view(k // (r * r), r, r).permute(1, 2, 0).reshape(-1)  # sub-pixel order
        ref = F.pixel_shuffle(F.conv2d(F.conv2d(x.double(), dw.double(), None, 1, 1, 1, c), pw.double()), r)
        res = torch.randn(ref.shape)
        y = ops.separable_conv2d(x, dw, None, pw[order].contiguous(), None, [1, 1], [1, 1], [1, 1], 0, 0, 0.0, res, r)
        assert (y.double() - ref - res.double()).abs().max().item() < 1e-3, (c, k, r)
    # Fused inverted residual: the window of expanded rows moved and refilled (tall images, stride 2), channel tails,
    # K slices of both 1×1 convs (C, E > KC), one-row and one-pixel-row images, two images, a residual
    for (n, c, h, w, e, k, st) in [(1, 16, 23, 9, 96, 24, 2), (2, 5, 17, 7, 24, 5, 1), (1, 300, 6, 5, 520, 9, 1),
                                   (1, 3, 1, 4, 8, 3, 1), (1, 8, 9, 1, 48, 8, 2), (1, 24, 40, 6, 144, 24, 1)]:
        x = torch.randn(n, c, h, w)
        ex, dw, pw, pb = torch.randn(e, c, 1, 1), torch.randn(e, 1, 3, 3), torch.randn(k, e, 1, 1), torch.randn(k)
        mid = F.relu6(F.conv2d(F.relu6(F.conv2d(x.double(), ex.double())), dw.double(), None, st, 1, 1, e))
        ref = F.conv2d(mid, pw.double(), pb.double())
        res = torch.randn(ref.shape)
        y = ops.inverted_residual(x, ex, None, 3, dw, None, pw, pb, [st, st], [1, 1], [1, 1], 3, 0, 0.0, res)
        assert (y.double() - ref - res.double()).abs().max().item() < 1e-3 * max(1.0, ref.abs().max().item()), \
            (c, e, k)
    # int8 conv (the kernel SFT_KERNELS_INT8 / SFT_KERNELS_ISA chose): channel and pixel tails, stride 2, the RGB
    # conv, float input quantized in the copy, NCHW and channels_last, uint8 output with a residual
    # (the 260×256 image's padded copy is built per band of rows under AMX)
    for (n, c, h, w, k, st) in [(2, 13, 9, 8, 35, 2), (1, 64, 7, 37, 64, 1), (1, 80, 6, 19, 48, 2),
                                (1, 3, 9, 9, 8, 1), (1, 16, 5, 33, 97, 1), (2, 64, 7, 7, 40, 1),
                                (1, 64, 260, 256, 16, 1), (1, 64, 9, 130, 3, 1), (2, 5, 7, 37, 1, 1),
                                (1, 32, 8, 21, 8, 1), (1, 48, 6, 23, 3, 1)]:
        # the last four: few output channels, pixels in the lanes (on AMX up to 4 from up to 64 channels: 48 padded
        # to 64)
        wq = torch.randint(-128, 128, (k, c, 3, 3), dtype=torch.int8)
        packed, wsum = ops.qconv2d_pack(wq)
        ws = torch.rand(k) * 0.01 + 0.001
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        for x in (xq, xq.contiguous(memory_format=torch.channels_last), xq.float() * 0.03 - 1.0):
            y = ops.qconv2d(x, 0.03, 33, packed, wsum, ws, None, 3, 3, [st, st], [1, 1], [1, 1], 0, 0.0, None, 0.0, 0)
            xi = torch.clamp(torch.round(x * torch.tensor(1 / 0.03)) + 33, 0, 255) if x.is_floating_point() else x
            ref = F.conv2d(xi.double() - 33, wq.double(), None, st, 1) * (0.03 * ws.double()).view(1, -1, 1, 1)
            assert (y.double() - ref).abs().max().item() < 1e-3, (c, k, st)
            res = torch.randn(ref.shape)
            y8 = ops.qconv2d(x, 0.03, 33, packed, wsum, ws, torch.randn(k), 3, 3, [st, st], [1, 1], [1, 1],
                             1 + 2 * (st == 2), 0.0, res, 0.05, 7)  # relu, or relu6 (its bound prescaled)
            assert y8.dtype == torch.uint8 and y8.shape == ref.shape
    # int8 and bfloat16 outputs and a uint8 residual, in each kernel's store: dense tiles with channel tails (35, 97),
    # few output channels (3), a banded 260×256 input, grouped and depthwise convs
    for (n, c, h, w, k, st) in [(2, 13, 9, 8, 35, 2), (1, 16, 5, 33, 97, 1), (1, 64, 9, 130, 3, 1),
                                (1, 64, 260, 256, 16, 1)]:
        wq = torch.randint(-128, 128, (k, c, 3, 3), dtype=torch.int8)
        packed, wsum = ops.qconv2d_pack(wq)
        ws, xq = torch.rand(k) * 0.01 + 0.001, torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        p, q = (h - 1) // st + 1, (w - 1) // st + 1
        res = torch.randint(0, 256, (n, k, p, q), dtype=torch.uint8)
        y = ops.qconv2d(xq, 0.03, 33, packed, wsum, ws, None, 3, 3, [st, st], [1, 1], [1, 1], 1, 0.0, res, 0.05, -7,
                        None, None, 1, torch.int8, 0.02, 131)
        assert y.dtype == torch.int8 and y.shape == (n, k, p, q)
        y = ops.qconv2d(xq, 0.03, 33, packed, wsum, ws, None, 3, 3, [st, st], [1, 1], [1, 1], 6, 0.0, res, 0.0, 0,
                        None, None, 1, torch.bfloat16, 0.02, 131)  # (GELU: code 6)
        assert y.dtype == torch.bfloat16 and y.shape == (n, k, p, q)
    for (n, c, h, w, g) in [(1, 32, 7, 6, 4), (2, 33, 9, 8, 33)]:
        wq = torch.randint(-128, 128, (c, c // g, 3, 3), dtype=torch.int8)
        ws, xq = torch.rand(c) * 0.01 + 0.001, torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        res = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        if g == c:
            y = ops.qconv2d_depthwise(xq, 0.03, 33, wq, ws, None, [1, 1], [1, 1], [1, 1], 0, 0.0, res, 0.05, 3, None,
                                      None, torch.int8, 0.02, 131)
        elif ops.qconv2d_grouped_fits(c, c, g):
            cg = c // g
            packed = wq.permute(2, 3, 1, 0).reshape(9, cg // 4, 4, c).permute(0, 1, 3, 2).contiguous()
            wsum = wq.to(torch.int32).sum((1, 2, 3)).to(torch.int32)
            y = ops.qconv2d_grouped(xq, 0.03, 33, packed, wsum, ws, None, 3, 3, [1, 1], [1, 1], [1, 1], g, 0, 0.0,
                                    res, 0.0, 0, None, None, torch.bfloat16, 0.02, 131)
        else:
            continue
        assert y.shape == (n, c, h, w) and y.dtype in (torch.int8, torch.bfloat16)
    # int8 SFT modulation (the VNNI pair tile over whole 7-pixel tiles and 32-channel panels, buffered tiles for the
    # rest): channel and pixel tails, maps padded to 4-channel groups, a batch, NCHW x
    for (n, k, cs, ct, h, w) in [(1, 64, 32, 32, 9, 13), (2, 40, 12, 20, 9, 11), (1, 96, 18, 7, 5, 3)]:
        x = torch.randn(n, k, h, w)
        ms, mt = (torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8) for c in (cs, ct))
        wsq, wtq = (torch.randint(-128, 128, (k, c, 1, 1), dtype=torch.int8) for c in (cs, ct))
        (ps, ss), (pt, st) = ops.qconv2d_pack(wsq), ops.qconv2d_pack(wtq)
        sc_s, sc_t, bs = torch.rand(k) * 0.002 + 0.0005, torch.rand(k) * 0.002 + 0.0005, torch.randn(k)
        y = ops.qsft_modulation(x, ms, 0.05, 7, ps, ss, sc_s, bs, mt, 0.04, 12, pt, st, sc_t, None, 0.03, 100)
        scale = ops.qconv2d(ms, 0.05, 7, ps, ss, sc_s, bs, 1, 1, [1, 1], [0, 0], [1, 1], 0, 0.0, None, 0.0, 0)
        shift = ops.qconv2d(mt, 0.04, 12, pt, st, sc_t, None, 1, 1, [1, 1], [0, 0], [1, 1], 0, 0.0, None, 0.0, 0)
        ref = torch.clamp(torch.round((x * (scale + 1) + shift) * torch.tensor(1 / 0.03)) + 100, 0, 255)
        assert y.dtype == torch.uint8 and (y.double() - ref.double()).abs().max().item() <= 1, (k, cs, ct)
    # the whole int8 SFT layer: first convs into per-thread buffers (pads for maps of 18 / 7 channels, two panels of
    # a 40-channel map), work items (14 pixels on these small maps) with a partial last one, a batch
    for (n, k, c, cs, ct, h, w) in [(1, 64, 32, 32, 32, 9, 13), (2, 40, 20, 12, 40, 9, 11), (1, 96, 13, 18, 7, 5, 3)]:
        x = torch.randn(n, k, h, w)
        cond = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        w0 = [torch.randint(-128, 128, (m, c, 1, 1), dtype=torch.int8) for m in (cs, ct)]
        w1 = [torch.randint(-128, 128, (k, m, 1, 1), dtype=torch.int8) for m in (cs, ct)]
        p0, p1 = [ops.qconv2d_pack(w) for w in w0], [ops.qconv2d_pack(w) for w in w1]
        sc0, sc1 = [torch.rand(m) * 0.002 + 0.0005 for m in (cs, ct)], [torch.rand(k) * 0.002 + 0.0005 for _ in "st"]
        b1s, b0t = torch.randn(k), torch.randn(ct)
        y = ops.qsft_layer(x, cond, 0.02, 3, 2, 0.1, *p0[0], sc0[0], None, 0.05, 7, *p1[0], sc1[0], b1s, *p0[1],
                           sc0[1], b0t, 0.04, 12, *p1[1], sc1[1], None, 0.03, 100)
        mids = [ops.qconv2d(cond, 0.02, 3, *p0[i], sc0[i], b, 1, 1, [1, 1], [0, 0], [1, 1], 2, 0.1, None, *q)
                for i, b, q in ((0, None, (0.05, 7)), (1, b0t, (0.04, 12)))]
        u = ops.qsft_modulation(x, mids[0], 0.05, 7, *p1[0], sc1[0], b1s, mids[1], 0.04, 12, *p1[1], sc1[1], None,
                                0.03, 100)
        assert torch.equal(y, u), (k, c, cs, ct)
    # float SFT modulation: whole 7-pixel × 32-channel tiles and tails, mid maps as halves of one channels_last map
    for (n, k, cs, ct, h, w) in [(1, 64, 32, 32, 9, 13), (2, 40, 12, 20, 9, 11), (1, 96, 7, 5, 5, 3)]:
        x = torch.randn(n, k, h, w)
        both = torch.randn(n, cs + ct, h, w).contiguous(memory_format=torch.channels_last)
        ws, wt, bs = torch.randn(k, cs, 1, 1), torch.randn(k, ct, 1, 1), torch.randn(k)
        y = ops.sft_modulation(x, both[:, :cs], ws, bs, both[:, cs:], wt, None)
        ref = x.double() * (F.conv2d(both[:, :cs].double(), ws.double(), bs.double()) + 1) + F.conv2d(
            both[:, cs:].double(), wt.double())
        assert (y.double() - ref).abs().max().item() < 1e-3, (k, cs, ct)
    # int8 output written to its PixelShuffle place by the store (VNNI; others shuffle after): r = 2 and 3, tiles
    # crossing row ends, a batch, a banded input past 4 MB; a residual (shuffled after the conv)
    for (n, c, h, w, k, r) in [(2, 16, 9, 11, 128, 2), (1, 8, 5, 13, 288, 3), (1, 64, 260, 256, 128, 2)]:
        wq = torch.randint(-128, 128, (k, c, 3, 3), dtype=torch.int8)
        packed, wsum = ops.qconv2d_pack(wq)
        ws = torch.rand(k) * 0.01 + 0.001
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        y = ops.qconv2d(xq, 0.03, 33, packed, wsum, ws, None, 3, 3, [1, 1], [1, 1], [1, 1], 1, 0.0, None, 0.05, 7,
                        None, None, r)
        assert y.shape == (n, k // (r * r), h * r, w * r) and y.dtype == torch.uint8
        y = ops.qconv2d(xq, 0.03, 33, packed, wsum, ws, None, 3, 3, [1, 1], [1, 1], [1, 1], 0, 0.0,
                        torch.randn(n, k, h, w), 0.0, 0, None, None, r)
        assert y.shape == (n, k // (r * r), h * r, w * r) and y.dtype == torch.float32
    # NCHW -> channels_last: whole 32×32 blocks (register transposes on AVX-512) and edges, batches; 1 to 4 channels
    # interleaved 16 pixels at a time with pixel tails
    for shape in [(1, 64, 64, 64), (2, 40, 33, 35), (1, 17, 9, 130), (2, 3, 13, 11), (1, 1, 5, 3), (1, 4, 7, 9),
                  (3, 2, 1, 17)]:
        x = torch.randn(*shape)
        y = ops.to_channels_last(x)
        assert torch.equal(y, x) and y.is_contiguous(memory_format=torch.channels_last), shape
        z = ops.to_nchw(y)  # and back, as a map handed to an NCHW caller
        assert torch.equal(z, x) and z.is_contiguous(), shape
    # int8 1×1 of a uint8 channels_last input read in place (no copy), a channel slice of a wider tensor too
    for (n, c, h, w, k) in [(2, 32, 6, 19, 40), (1, 12, 5, 30, 3)]:
        wq = torch.randint(-128, 128, (k, c, 1, 1), dtype=torch.int8)
        packed, wsum = ops.qconv2d_pack(wq)
        ws = torch.rand(k) * 0.01 + 0.001
        wide = torch.randint(0, 256, (n, c + 8, h, w), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        for x in (wide[:, :c].contiguous(memory_format=torch.channels_last), wide[:, 4:4 + c]):
            y = ops.qconv2d(x, 0.03, 33, packed, wsum, ws, None, 1, 1, [1, 1], [0, 0], [1, 1], 0, 0.0, None, 0.0, 0)
            ref = F.conv2d(x.double() - 33, wq.double()) * (0.03 * ws.double()).view(1, -1, 1, 1)
            assert (y.double() - ref).abs().max().item() < 1e-3, (c, k)
    # int8 strided convs (AMX: flat blocks over the padded copy's phase planes, whose last tiles read into the
    # slack), flat blocks' uint8 store with a uint8 residual, and few-channel inputs (uint8 and float32,
    # channels_last and NCHW) copied several pixels per vector; few-channel convs on AMX reading each kernel row's
    # taps as one chunk (row taps): in place from an unpadded uint8 input whose blocks are whole, from the copy where
    # the last block is partial, in flat blocks (a narrow image), 64-byte kernel rows (12 channels); dilated: gathered
    for (n, c, h, w, k, r, st, pd, dl) in [(2, 64, 13, 11, 48, 3, 2, 1, 1), (1, 64, 17, 19, 32, 3, 3, 1, 1),
                                           (1, 32, 16, 15, 40, 5, 2, 2, 1), (1, 64, 15, 15, 33, 3, 2, 2, 2),
                                           (1, 64, 9, 13, 64, 1, 2, 1, 1), (1, 64, 7, 7, 64, 3, 1, 1, 1),
                                           (2, 3, 20, 23, 40, 7, 2, 3, 1), (1, 5, 9, 37, 16, 3, 1, 1, 1),
                                           (1, 8, 16, 128, 64, 4, 4, 0, 1), (1, 8, 12, 60, 40, 4, 4, 0, 1),
                                           (1, 3, 6, 9, 24, 3, 1, 1, 1), (1, 12, 9, 40, 33, 3, 1, 1, 1),
                                           (1, 3, 11, 13, 16, 3, 1, 2, 2)]:
        wq = torch.randint(-128, 128, (k, c, r, r), dtype=torch.int8)
        packed, wsum = ops.qconv2d_pack(wq)
        ws = torch.rand(k) * 0.01 + 0.001
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        xf = xq.float() * 0.03 - 1.0
        for x in (xq.contiguous(memory_format=torch.channels_last), xf,
                  xf.contiguous(memory_format=torch.channels_last)):
            y = ops.qconv2d(x, 0.03, 33, packed, wsum, ws, None, r, r, [st, st], [pd, pd], [dl, dl], 0, 0.0, None,
                            0.0, 0)
            xi = torch.clamp(torch.round(x * torch.tensor(1 / 0.03)) + 33, 0, 255) if x.is_floating_point() else x
            ref = F.conv2d(xi.double() - 33, wq.double(), None, st, pd, dl) * (0.03 * ws.double()).view(1, -1, 1, 1)
            assert (y.double() - ref).abs().max().item() < 1e-3, (c, k, r, st)
        res = torch.randint(0, 256, ref.shape, dtype=torch.uint8)
        y8 = ops.qconv2d(xq, 0.03, 33, packed, wsum, ws, None, r, r, [st, st], [pd, pd], [dl, dl], 1, 0.0, res, 0.05,
                         7, None, None, 1, None, 0.02, 131)
        assert y8.dtype == torch.uint8 and y8.shape == ref.shape
    # grouped int8 conv, 4-32 channels per group (VNNI: vectors over groups; else once per group): a 12-channel tail,
    # stride 2, a 5×5 dilated kernel, float input with a modulation, uint8 output with a residual
    for (n, c, h, w, g, r, st, dl) in [(2, 12, 9, 11, 3, 3, 1, 1), (1, 40, 8, 9, 5, 3, 2, 1),
                                       (1, 48, 7, 10, 3, 5, 1, 2), (1, 64, 6, 7, 2, 3, 1, 1)]:
        cg, pd = c // g, dl * (r // 2)
        wq = torch.randint(-128, 128, (c, cg, r, r), dtype=torch.int8)
        ws = torch.rand(c) * 0.01 + 0.001
        packed = wq.permute(2, 3, 1, 0).reshape(r * r, cg // 4, 4, c).permute(0, 1, 3, 2).contiguous()
        wsum = wq.to(torch.int32).sum((1, 2, 3)).to(torch.int32)
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        if ops.qconv2d_grouped_fits(c, c, g):
            y = ops.qconv2d_grouped(xq, 0.03, 33, packed, wsum, ws, None, r, r, [st, st], [pd, pd], [dl, dl], g, 0,
                                    0.0, None, 0.0, 0)
            ref = F.conv2d(xq.double() - 33, wq.double(), None, st, pd, dl, g) * (0.03 * ws.double()).view(1, -1, 1, 1)
            assert (y.double() - ref).abs().max().item() < 1e-3, (c, g)
            xf = xq.float() * 0.03 - 1.0
            y8 = ops.qconv2d_grouped(xf, 0.03, 33, packed, wsum, ws, torch.randn(c), r, r, [st, st], [pd, pd],
                                     [dl, dl], g, 1, 0.0, torch.randn(ref.shape), 0.05, 7, torch.rand_like(xf),
                                     torch.rand_like(xf))
            assert y8.dtype == torch.uint8 and y8.shape == ref.shape
    # depthwise int8 conv: channel tails (33, 19 channels), stride 2, 3-, 5- and 7-wide rows (groups of 8 / 4 / 2 / 1
    # pixels), float input with a modulation, uint8 output with a residual, SiLU (code 4) in the store
    for (n, c, h, w, r, st) in [(2, 33, 9, 8, 3, 1), (1, 19, 7, 11, 3, 2), (1, 40, 6, 7, 5, 1), (1, 40, 9, 15, 7, 1),
                                (1, 24, 11, 13, 7, 2)]:
        wq = torch.randint(-128, 128, (c, 1, r, r), dtype=torch.int8)
        ws, pd = torch.rand(c) * 0.01 + 0.001, r // 2
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        xf = xq.float() * 0.03 - 1.0
        sc, sf = torch.rand_like(xf), torch.rand_like(xf)
        y = ops.qconv2d_depthwise(xq.contiguous(memory_format=torch.channels_last), 0.03, 33, wq, ws, None, [st, st],
                                  [pd, pd], [1, 1], 0, 0.0, None, 0.0, 0)
        ref = F.conv2d(xq.double() - 33, wq.double(), None, st, pd, 1, c) * (0.03 * ws.double()).view(1, -1, 1, 1)
        assert (y.double() - ref).abs().max().item() < 1e-3, ("depthwise", c, r, st)
        y8 = ops.qconv2d_depthwise(xf, 0.03, 33, wq, ws, torch.randn(c), [st, st], [pd, pd], [1, 1], 2, 0.1,
                                   torch.randn(ref.shape), 0.05, 7, sc, sf)
        assert y8.dtype == torch.uint8 and y8.shape == ref.shape
        y8 = ops.qconv2d_depthwise(xq, 0.03, 33, wq, ws, torch.randn(c), [st, st], [pd, pd], [1, 1], 4, 0.0,
                                   None, 0.05, 7)
        assert y8.dtype == torch.uint8 and y8.shape == ref.shape
    # int8 Winograd-domain conv (AVX-512 transforms and VNNI sums, or the portable ones): odd sizes (tiles past the
    # edges), channels padded to 4-byte groups, K tails, blocks of 14 tiles across rows, a batch, NCHW, channels_last
    # and float input, uint8 output with a uint8 residual, PixelShuffle in the store and after it
    bt = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
    at = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
    for (n, c, h, w, k) in [(1, 64, 9, 13, 64), (2, 18, 7, 5, 40), (1, 16, 1, 1, 97), (1, 32, 5, 31, 128),
                            (2, 20, 1, 6, 44)]:  # one row, shuffled after the conv
        uq = torch.randint(-127, 128, (16, k, c), dtype=torch.int8)
        us, mult = torch.rand(16, k) * 0.01 + 0.001, torch.randint(2000, 32768, (16,), dtype=torch.int32)
        parts = [ops.qconv2d_pack(uq[p].reshape(k, c, 1, 1).contiguous()) for p in range(16)]
        packed, wsum = torch.cat([q[0].reshape(-1) for q in parts]), torch.cat([q[1].reshape(-1) for q in parts])
        xq = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8)
        tp, tq = (h + 1) // 2, (w + 1) // 2
        d = F.pad(xq.double() - 33, (1, 2 * tq + 1 - w, 1, 2 * tp + 1 - h))
        v = (bt @ d.unfold(2, 4, 2).unfold(3, 4, 2) @ bt.T).reshape(n, c, tp, tq, 16)
        qv = torch.clamp(torch.floor((v * mult.double() + 16384) / 32768), -128, 127)
        m = torch.einsum("pkc,nctsp->nktsp", uq.double(), qv)
        m = m * (us.double() * 0.03 * 32768 / mult.double().view(-1, 1)).T.reshape(1, -1, 1, 1, 16)
        ref = (at @ m.reshape(n, k, tp, tq, 4, 4) @ at.T).permute(0, 1, 2, 4, 3, 5).reshape(n, k, 2 * tp, 2 * tq)
        ref = ref[..., :h, :w]
        for x in (xq, xq.contiguous(memory_format=torch.channels_last), (xq.float() - 33) * 0.03):
            y = ops.qconv2d_winograd(x, 0.03, 33, packed, wsum, us, mult, None, 0, 0.0, None, 0.0, 0)
            assert (y.double() - ref).abs().max().item() < 1e-3 * max(1.0, ref.abs().max().item()), ("wino", c, k)
        res = torch.randint(0, 256, (n, k, h, w), dtype=torch.uint8)
        y8 = ops.qconv2d_winograd(xq, 0.03, 33, packed, wsum, us, mult, torch.randn(k), 1, 0.0, res, 0.05, 7, 1,
                                  0.02, 131)
        assert y8.dtype == torch.uint8 and y8.shape == (n, k, h, w)
        for r in (2, 4):
            if k % (r * r) == 0:
                y8 = ops.qconv2d_winograd(xq, 0.03, 33, packed, wsum, us, mult, None, 1, 0.0, None, 0.05, 7, r)
                assert y8.shape == (n, k // (r * r), h * r, w * r)
                yf = ops.qconv2d_winograd(xq, 0.03, 33, packed, wsum, us, mult, None, 1, 0.0, None, 0.0, 0, r)
                assert yf.shape == (n, k // (r * r), h * r, w * r)
    # sparse conv (the tile kernels SFT_KERNELS_ISA chose): unstructured and blocks of 4, empty filters, K and
    # pixel tails, stride, dilation, groups, 1x1 (padded: ring rows read in place off the line grid), padding wider
    # than a line, skipped channel chunks (c = 64), NCHW and channels_last, residual and modulation; 3x3 tap groups
    # (unstructured, stride 1), a 9 MB channels-last output (streamed stores), flat 1x1 convs (rows joined: a tile
    # past the last pixel, stride 2, a 7² map in short tiles), flat taps (3x3 to 7² at stride 2, blocks at stride 1)
    for (n, c, h, w, k, r, st, pd, dl, g, blk) in [
            (1, 16, 11, 29, 24, 1, 1, 0, 1, 1, 1), (1, 40, 15, 13, 72, 1, 2, 0, 1, 1, 1),
            (2, 24, 7, 7, 20, 1, 1, 0, 1, 1, 1), (1, 40, 14, 13, 24, 3, 2, 1, 1, 1, 1),
            (1, 24, 7, 6, 40, 3, 1, 1, 1, 1, 4),
            (1, 64, 9, 70, 64, 3, 1, 1, 1, 1, 1), (2, 16, 11, 9, 33, 3, 2, 1, 1, 1, 4),
            (1, 32, 13, 17, 40, 3, 1, 2, 2, 2, 0), (1, 48, 5, 7, 33, 1, 1, 0, 1, 3, 4),
            (1, 3, 6, 5, 8, 5, 1, 2, 1, 1, 1), (1, 40, 7, 21, 24, 1, 1, 1, 1, 1, 1),
            (1, 8, 4, 5, 16, 3, 1, 17, 1, 1, 1), (1, 64, 190, 190, 64, 3, 1, 1, 1, 1, 1)]:
        wt = torch.randn(k, c // g, r, r) * (torch.rand(k, c // g, r, r) < 0.3)
        wt[0] = 0
        if c == 64:
            wt[:, 16:48] = 0
        packed = ops.sparse_conv2d_pack(wt, g, blk)
        for channels_last in (False, True):
            x = torch.randn(n, c, h, w)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            sc, sf = torch.randn_like(x), torch.randn_like(x)
            ref = F.conv2d(x.double() * (sc.double() + 1) + sf.double(), wt.double(), None, st, pd, dl, g).relu()
            res = torch.randn(ref.shape)
            y = ops.sparse_conv2d(x, packed, None, r, r, [st, st], [pd, pd], [dl, dl], 1, 0.0, res, sc, sf)
            assert (y.double() - ref - res.double()).abs().max().item() < 1e-3, (c, k, r, st, g, blk)
    # sparse conv with PixelShuffle(r) in the store (the weight packed sub-pixel-major; 36 = 4 × 9 channels: masked)
    for k, r in ((64, 2), (36, 2), (27, 3)):
        wt = torch.randn(k, 8, 3, 3) * (torch.rand(k, 8, 3, 3) < 0.3)
        wsub = wt.reshape(k // (r * r), r * r, 8, 3, 3).transpose(0, 1).reshape(k, 8, 3, 3).contiguous()
        packed = ops.sparse_conv2d_pack(wsub, 1, 1)
        for channels_last in (False, True):
            x = torch.randn(1, 8, 7, 19)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            ref = F.pixel_shuffle(F.conv2d(x.double(), wt.double(), None, 1, 1).relu(), r)
            res = torch.randn(ref.shape)
            y = ops.sparse_conv2d(x, packed, None, 3, 3, [1, 1], [1, 1], [1, 1], 1, 0.0, res, None, None, r)
            assert (y.double() - ref - res.double()).abs().max().item() < 1e-3, ("shuffle", k, r)
    print(f"ASan: {ops.gemm_config()}, int8 {ops.qconv2d_kernel()}, sparse {ops.sparse_conv2d_kernel()}: "
          "all cases clean")


if __name__ == "__main__":
    build() if sys.argv[1:] == ["build"] else run()
