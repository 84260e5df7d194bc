"""Seeded random sweeps of the cpu backend against each op's reference backend: shapes, strides, dilations, groups,
layouts (NCHW, channels_last, sliced), epilogues, output and residual types, PixelShuffle, drawn together so that
combinations no hand-written case lists get run. Such a sweep found one-row images with the PixelShuffle after the
conv failing (shuffle_sub_pixels). Each draw is small; a failure prints the draw to reproduce it."""
import random

import pytest
import torch

from sft_kernels import ops
from sft_kernels.ops.qconv2d_winograd import calibrate_mult, winograd_weight
from tests.conftest import int8_kernels, op_backends, run_with_int8_kernel

DRAWS = 60


def _layout(t, rng):
    r = rng.random()
    if r < 0.4:
        return t.contiguous(memory_format=torch.channels_last)
    if r < 0.5:  # a view into a larger tensor: channels and columns sliced
        big = torch.zeros(t.shape[0], t.shape[1] + 1, t.shape[2], t.shape[3] + 2, dtype=t.dtype)
        view = big[:, 1:, :, 1:-1]
        view.copy_(t)
        return view
    return t


def _out_size(h, r, stride, pad, dil):
    return (h + 2 * pad - dil * (r - 1) - 1) // stride + 1


def _fit(h, r, pad, dil):
    """h, or the least size with one output pixel."""
    return max(h, dil * (r - 1) + 1 - 2 * pad)


def _check(y, e, draw):
    assert y.shape == e.shape and y.dtype == e.dtype, draw
    if y.dtype in (torch.uint8, torch.int8):
        d = (y.int() - e.int()).abs()
        assert d.max() <= 1 and (d > 0).float().mean() <= 0.02, (draw, d.max().item())
    else:
        scale = max(1.0, e.double().abs().max().item())
        tol = 2e-2 if y.dtype == torch.bfloat16 else 1e-4
        assert (y.double() - e.double()).abs().max().item() <= tol * scale, draw


def _qconv_draw(rng):
    groups = rng.choice([1, 1, 1, 2, "depthwise"])
    cg, kg = rng.choice([1, 3, 4, 8, 16, 20, 32]), rng.choice([1, 3, 8, 16, 33])
    if groups == "depthwise":
        groups, cg, kg = rng.choice([8, 16]), 1, 1
    r, stride, dil = rng.choice([1, 3, 3, 5, 2]), rng.choice([1, 1, 2, 4]), rng.choice([1, 1, 2])
    return dict(n=rng.choice([1, 2]), c=cg * groups, k=kg * groups, groups=groups, r=r, stride=stride, dil=dil,
                pad=rng.choice([0, r // 2 * dil]), h=rng.randint(1, 24), w=rng.randint(1, 24),
                float_in=rng.random() < 0.3, out=rng.choice(["f32", "u8", "s8", "bf16"]),
                res=rng.choice([None, None, "f32", "u8"]),
                act=rng.choice([None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh"]),
                shuffle=rng.random() < 0.2)


@pytest.mark.skipif("cpu" not in op_backends("qconv2d", torch.uint8), reason="cpu backend not built")
@pytest.mark.parametrize("seed", range(DRAWS))
def test_qconv2d_random_draws(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    d = _qconv_draw(rng)
    d["h"], d["w"] = _fit(d["h"], d["r"], d["pad"], d["dil"]), _fit(d["w"], d["r"], d["pad"], d["dil"])
    p = _out_size(d["h"], d["r"], d["stride"], d["pad"], d["dil"])
    q = _out_size(d["w"], d["r"], d["stride"], d["pad"], d["dil"])
    shuffle = 2 if d["shuffle"] and d["groups"] == 1 and d["k"] % 4 == 0 else 1
    zx, xs = rng.randint(0, 255), rng.uniform(0.01, 0.05)
    xq = torch.randint(0, 256, (d["n"], d["c"], d["h"], d["w"]), dtype=torch.uint8)
    x = _layout((xq.float() - zx) * xs if d["float_in"] else xq, rng)
    wq = torch.randint(-127, 128, (d["k"], d["c"] // d["groups"], d["r"], d["r"]), dtype=torch.int8)
    ws, b = torch.rand(d["k"]) * 0.01 + 1e-3, torch.randn(d["k"]) if rng.random() < 0.7 else None
    kw = dict(input_scale=xs, input_zero_point=zx, activation=d["act"], negative_slope=0.1, pixel_shuffle=shuffle)
    if d["out"] == "u8":
        kw.update(out_scale=rng.uniform(0.05, 0.5), out_zero_point=rng.randint(0, 255))
    elif d["out"] == "s8":
        kw.update(out_scale=rng.uniform(0.05, 0.5), out_zero_point=rng.randint(-128, 127), out_dtype=torch.int8)
    elif d["out"] == "bf16":
        kw.update(out_dtype=torch.bfloat16)
    out = (d["n"], d["k"] // shuffle ** 2, p * shuffle, q * shuffle)  # a residual is shaped like the output
    if d["res"] == "f32":
        kw.update(residual=_layout(torch.randn(out), rng))
    elif d["res"] == "u8":
        kw.update(residual=_layout(torch.randint(0, 256, out, dtype=torch.uint8), rng),
                  residual_quant=(rng.uniform(0.01, 0.1), rng.randint(0, 255)))
    a = (d["stride"], d["pad"], d["dil"], d["groups"])
    y = ops.qconv2d(x, wq, ws, b, *a, backend="cpu", **kw)
    _check(y, ops.qconv2d(x, wq, ws, b, *a, backend="reference", **kw), d)


@pytest.mark.parametrize("kernel", int8_kernels()[1:])
def test_qconv2d_random_draws_on_every_int8_kernel(kernel):
    """The same draws with each int8 kernel this CPU can be forced to run besides its own (AVX-VNNI at 256 bits,
    AVX2, the portable loop), in a fresh process each (the kernel is chosen once per process)."""
    run_with_int8_kernel(kernel, "from sft_kernels.ops.qconv2d import cpu\n"
                                 "from tests.ops.test_random_sweep import DRAWS, test_qconv2d_random_draws\n"
                                 f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
                                 "for seed in range(DRAWS):\n"
                                 "    test_qconv2d_random_draws(seed)\n")


@pytest.mark.skipif("cpu" not in op_backends("qconv2d_winograd", torch.uint8), reason="cpu backend not built")
@pytest.mark.parametrize("seed", range(DRAWS))
def test_qconv2d_winograd_random_draws(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    n, c, k = rng.choice([1, 2]), rng.randint(16, 70), rng.randint(16, 130)
    h, w = rng.randint(1, 30), rng.randint(1, 30)
    shuffle = 2 if rng.random() < 0.25 else 1
    k = k // 4 * 4 if shuffle > 1 else k
    zx = rng.randint(0, 255)
    x = _layout(torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8), rng)
    u_q, u_scale = winograd_weight(torch.randn(k, c, 3, 3) * rng.choice([0.01, 0.05, 0.3]))
    mult, b = calibrate_mult([x], zx), torch.randn(k) * 0.1 if rng.random() < 0.7 else None
    kind = rng.choice(["f32", "u8", "u8 residual", "f32 residual"])
    kw = dict(input_scale=rng.uniform(0.005, 0.1), input_zero_point=zx, pixel_shuffle=shuffle,
              activation=rng.choice([None, "relu", "leaky_relu"]), negative_slope=0.2)
    if kind in ("u8", "u8 residual"):
        kw.update(out_scale=rng.uniform(0.01, 0.2), out_zero_point=rng.randint(0, 255))
    out = (n, k // shuffle ** 2, h * shuffle, w * shuffle)  # a residual is shaped like the output
    if kind == "u8 residual":
        kw.update(residual=_layout(torch.randint(0, 256, out, dtype=torch.uint8), rng),
                  residual_quant=(0.03, rng.randint(0, 255)))
    if kind == "f32 residual":
        kw.update(residual=_layout(torch.randn(out), rng))
    draw = dict(n=n, c=c, k=k, h=h, w=w, shuffle=shuffle, kind=kind, layout=x.stride())
    y = ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="cpu", **kw)
    _check(y, ops.qconv2d_winograd(x, u_q, u_scale, mult, b, backend="reference", **kw), draw)


@pytest.mark.skipif("cpu" not in op_backends("separable_conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("seed", range(DRAWS))
def test_separable_conv2d_random_draws(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    c, mult, k = rng.choice([3, 8, 16, 32, 64, 100]), rng.choice([1, 1, 2]), rng.choice([8, 16, 24, 32, 64, 128])
    r, stride, dil = rng.choice([3, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 1, 2])
    pad, n = rng.choice([0, r // 2 * dil]), rng.choice([1, 2])
    h, w = _fit(rng.randint(1, 24), r, pad, dil), _fit(rng.randint(1, 24), r, pad, dil)
    p, q = _out_size(h, r, stride, pad, dil), _out_size(w, r, stride, pad, dil)
    shuffle = 2 if k % 4 == 0 and rng.random() < 0.25 else 1
    x = _layout(torch.randn(n, c, h, w), rng)
    dw, pw = torch.randn(c * mult, 1, r, r), torch.randn(k, c * mult, 1, 1) / (c * mult) ** 0.5
    dwb = torch.randn(c * mult) if rng.random() < 0.5 else None
    pwb = torch.randn(k) if rng.random() < 0.5 else None
    kw = dict(mid_activation=rng.choice([None, "relu", "relu6", "leaky_relu", "silu", "hardswish", "gelu"]),
              negative_slope=0.1,
              activation=rng.choice([None, "relu", "leaky_relu", "silu", "gelu_tanh"]), pixel_shuffle=shuffle)
    if rng.random() < 0.3:
        kw.update(residual=_layout(torch.randn(n, k // shuffle ** 2, p * shuffle, q * shuffle), rng))
    draw = dict(n=n, c=c, mult=mult, k=k, h=h, w=w, r=r, stride=stride, dil=dil, pad=pad, shuffle=shuffle)
    y = ops.separable_conv2d(x, dw, pw, dwb, pwb, stride, pad, dil, backend="cpu", **kw)
    _check(y, ops.separable_conv2d(x, dw, pw, dwb, pwb, stride, pad, dil, backend="reference", **kw), draw)


@pytest.mark.skipif("cpu" not in op_backends("inverted_residual"), reason="cpu backend not built")
@pytest.mark.parametrize("seed", range(DRAWS))
def test_inverted_residual_random_draws(seed):
    rng = random.Random(1000 + seed)
    torch.manual_seed(1000 + seed)
    c, e, mult = rng.choice([3, 8, 16, 24, 40]), rng.choice([8, 24, 48, 96, 100]), rng.choice([1, 1, 2])
    k, r, stride, dil = rng.choice([4, 16, 24, 33]), rng.choice([3, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 1, 2])
    pad, n = rng.choice([0, r // 2 * dil]), rng.choice([1, 2])
    h, w = _fit(rng.randint(1, 30), r, pad, dil), _fit(rng.randint(1, 30), r, pad, dil)
    p, q = _out_size(h, r, stride, pad, dil), _out_size(w, r, stride, pad, dil)
    x = _layout(torch.randn(n, c, h, w), rng)
    ex, dw = torch.randn(e, c, 1, 1) / c ** 0.5, torch.randn(e * mult, 1, r, r) / r
    pw = torch.randn(k, e * mult, 1, 1) / (e * mult) ** 0.5
    b = [torch.randn(m) if rng.random() < 0.5 else None for m in (e, e * mult, k)]
    acts = [None, "relu", "relu6", "leaky_relu", "silu", "hardswish", "gelu"]
    kw = dict(ex_activation=rng.choice(acts), mid_activation=rng.choice(acts), activation=rng.choice(acts[:4]),
              negative_slope=0.1)
    if rng.random() < 0.4:
        kw.update(residual=_layout(torch.randn(n, k, p, q), rng))
    draw = dict(n=n, c=c, e=e, mult=mult, k=k, h=h, w=w, r=r, stride=stride, dil=dil, pad=pad,
                threads=torch.get_num_threads())
    y = ops.inverted_residual(x, ex, dw, pw, *b, stride, pad, dil, backend="cpu", **kw)
    _check(y, ops.inverted_residual(x, ex, dw, pw, *b, stride, pad, dil, backend="reference", **kw), draw)


@pytest.mark.skipif("cpu" not in op_backends("sparse_conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("seed", range(DRAWS))
def test_sparse_conv2d_random_draws(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    c, k = rng.choice([3, 8, 16, 17, 32, 64]), rng.choice([4, 8, 16, 31, 64])
    r, stride, dil = rng.choice([1, 3, 3, 5]), rng.choice([1, 1, 2]), rng.choice([1, 1, 2])
    pad, n = rng.choice([0, r // 2 * dil]), rng.choice([1, 2])
    h, w = _fit(rng.randint(1, 24), r, pad, dil), _fit(rng.randint(1, 24), r, pad, dil)
    p, q = _out_size(h, r, stride, pad, dil), _out_size(w, r, stride, pad, dil)
    sparsity = rng.choice([0.0, 0.5, 0.9, 0.99, 1.0])
    block = 4 if k % 4 == 0 and rng.random() < 0.3 else None
    groups = 2 if c % 2 == 0 and k % 2 == 0 and rng.random() < 0.25 else 1
    shuffle = 2 if k % 4 == 0 and rng.random() < 0.3 else 1  # PixelShuffle in the store
    wt = torch.randn(k, c // groups, r, r)
    if block:
        keep = torch.rand(k // 4, 1, c // groups * r * r) >= sparsity
        wt = (wt.reshape(k // 4, 4, -1) * keep).reshape(k, c // groups, r, r)
    else:
        wt = wt * (torch.rand_like(wt) >= sparsity)
    if rng.random() < 0.2:
        wt[: k // 2] = 0  # empty filters
    x, b = _layout(torch.randn(n, c, h, w), rng), torch.randn(k) if rng.random() < 0.6 else None
    kw = dict(activation=rng.choice([None, "relu", "leaky_relu"]), block=block, pixel_shuffle=shuffle)
    if rng.random() < 0.3:
        kw.update(residual=_layout(torch.randn(n, k // shuffle ** 2, p * shuffle, q * shuffle), rng))
    draw = dict(n=n, c=c, k=k, h=h, w=w, r=r, stride=stride, dil=dil, pad=pad, sparsity=sparsity, block=block,
                groups=groups, shuffle=shuffle)
    y = ops.sparse_conv2d(x, wt, b, stride, pad, dil, groups, backend="cpu", **kw)
    _check(y, ops.sparse_conv2d(x, wt, b, stride, pad, dil, groups, backend="reference", **kw), draw)
