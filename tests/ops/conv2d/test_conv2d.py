"""sft.conv2d on every backend available here vs the float64 reference."""

import pytest
import torch
import torch.nn.functional as F

from sft_kernels import backends, reference
from sft_kernels.ops import conv2d
from sft_kernels.testing import assert_close, tol

from tests.conftest import op_backends

# (N, C, H, W, K, R, S, stride, padding, dilation, groups): odd sizes, stride 2, dilation 2, groups, batch > 1
SHAPES = [
    (2, 5, 13, 11, 7, 3, 3, 1, 1, 1, 1),
    (1, 16, 9, 9, 8, 3, 3, 2, 1, 2, 2),
    (3, 8, 7, 13, 12, 1, 1, 1, 0, 1, 1),
    (1, 3, 17, 15, 33, 3, 3, 1, 1, 1, 1),
    (2, 8, 12, 12, 4, 4, 4, 4, 0, 1, 1),
    (1, 12, 10, 9, 6, 3, 2, (2, 1), (0, 2), (1, 2), 3),
    (1, 64, 12, 12, 64, 3, 3, 1, 1, 1, 1),
    (2, 32, 9, 7, 48, 1, 1, 1, 0, 1, 1),  # 1×1, C a multiple of 8: a GEMM reading the rows in place
    (1, 3, 20, 18, 40, 7, 7, 2, 3, (2, 1), 1),  # RGB stem, 7×7 s2, dilated rows: cpu stacked-rows path
    (2, 2, 9, 16, 33, 2, 5, (1, 3), (1, 2), 1, 1),
    (1, 16, 11, 13, 40, 3, 3, 2, 1, 1, 1),  # strided, 16 channels: stacked rows too
    # thin ends (cpu: direct AVX-512 kernels): few input channels, few output channels
    (2, 3, 11, 13, 64, 3, 3, 1, 1, 1, 1),
    (1, 2, 6, 7, 80, 3, 3, 2, 2, 1, 1),
    (2, 32, 10, 9, 3, 3, 3, 1, 2, 2, 1),
    (1, 16, 7, 8, 4, 1, 1, 1, 0, 1, 1),
    (2, 20, 9, 7, 48, 1, 1, 1, 0, 1, 1),  # 1×1 with C < 64 not a multiple of 8, K < 256: the few-input kernel
    (1, 24, 9, 9, 16, 1, 1, 2, 0, 1, 1),
    # depthwise (groups = C; cpu: its own path): masked channel tails, stride 2, dilation, a channel multiplier
    (2, 17, 9, 11, 17, 3, 3, 1, 1, 1, 17),
    (1, 32, 12, 10, 32, 3, 3, 2, 1, (2, 1), 32),
    (1, 6, 7, 9, 12, 5, 3, 1, (2, 1), 1, 6),
]
# depthwise 7×7 and 5×5 (cpu: each input vector of a row loaded once for 7 pixels): interior and edge groups,
# single pixels, a channel tail, stride 2, a row narrower than the kernel. Not under the Triton interpreter (one GEMM
# per group: minutes).
WIDE_DEPTHWISE_SHAPES = [
    (1, 40, 11, 19, 40, 7, 7, 1, 3, 1, 40),
    (2, 24, 13, 12, 24, 5, 5, 2, 2, 1, 24),
    (1, 16, 6, 5, 16, 7, 7, 1, 3, 1, 16),
]
LAYOUTS = ["nchw", "channels_last", "noncontig"]
CPU_BACKENDS = op_backends("conv2d")  # triton included: on a CPU it runs through its interpreter


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "noncontig":  # a strided view: every other column of a wider tensor
        wide = torch.empty(*x.shape[:3], x.shape[3] * 2, dtype=x.dtype).normal_()
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _check(backend, shape, layout, act=None, slope=0.01, with_bias=True, with_res=False, dtype=torch.float32):
    n, c, h, w, k, r, s, st, pd, dl, g = shape
    x = torch.randn(n, c, h, w, dtype=dtype)
    wt = torch.randn(k, c // g, r, s, dtype=dtype)
    b = torch.randn(k, dtype=dtype) if with_bias else None
    ref = reference.conv2d(x.double(), wt.double(), None if b is None else b.double(), st, pd, dl, g, act, slope)
    res = torch.randn_like(ref).to(dtype) if with_res else None
    if res is not None:
        ref = ref + res.double()
    y = conv2d(_layout(x, layout), wt, b, st, pd, dl, g, activation=act, negative_slope=slope, residual=res,
               backend=backend)
    assert y.shape == ref.shape and y.dtype == dtype
    want_cl = layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)
    assert_close(y, ref, k=(c // g) * r * s, msg=f"{backend} {shape} {layout} act={act}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv2d_matches_reference(backend, shape, layout):
    _check(backend, shape, layout)


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "triton"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", WIDE_DEPTHWISE_SHAPES, ids=str)
def test_wide_depthwise_matches_reference(backend, shape, layout):
    _check(backend, shape, layout)
    _check(backend, shape, layout, "relu6", with_bias=False, with_res=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("act,slope", [(None, 0.01), ("relu", 0.01), ("leaky_relu", 0.2), ("leaky_relu", -0.5),
                                       ("relu6", 0.01), ("silu", 0.01), ("hardswish", 0.01), ("gelu", 0.01),
                                       ("gelu_tanh", 0.01)])
@pytest.mark.parametrize("with_res", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fused_epilogue(backend, act, slope, with_res, layout):
    _check(backend, SHAPES[0], layout, act, slope, with_bias=True, with_res=with_res)
    _check(backend, SHAPES[1], layout, act, slope, with_bias=False, with_res=with_res)
    for thin in SHAPES[-6:]:  # few input / few output channels: the cpu backend's direct kernels
        _check(backend, thin, layout, act, slope, with_bias=True, with_res=with_res)


# Few channels per group (cpu: vectors over whole groups, grouped.cpp): Cg = 4 with a masked channel tail (K = 12),
# 8 at stride 2 and with a tail (K = 40), 2 dilated (the general loop), 16, 32 with a 5×3 kernel; widths give whole
# 7-pixel groups inside the image, edge groups and single pixels.
GROUPED_SHAPES = [
    (2, 12, 9, 11, 12, 3, 3, 1, 1, 1, 3),
    (1, 64, 10, 13, 64, 3, 3, 2, 1, 1, 8),
    (2, 40, 11, 17, 40, 3, 3, 1, 1, 1, 5),
    (1, 32, 9, 8, 32, 3, 3, 1, 2, 2, 16),
    (1, 48, 7, 19, 48, 3, 3, 1, 1, 1, 3),
    (1, 64, 6, 9, 64, 5, 3, 1, (2, 1), 1, 2),
    (1, 16, 8, 23, 16, 3, 3, 2, 0, 1, 4),  # unpadded stride 2: every group inside
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", GROUPED_SHAPES, ids=str)
def test_few_channels_per_group(backend, shape, layout):
    _check(backend, shape, layout)
    _check(backend, shape, layout, "leaky_relu", 0.2, with_bias=False, with_res=True)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_few_channels_per_group_run_on_the_grouped_path():
    """Where the CPU has AVX-512 every case above takes the grouped kernel, not one GEMM per group; wider groups and
    groups whose output channels differ from their inputs keep the implicit GEMM."""
    from sft_kernels.runtime import registry

    registry.cpu_ext()

    def path(c, k, g, r=3, s=3, st=1, dl=1):
        x, w = torch.randn(1, c, 8, 8), torch.randn(k, c // g, r, s)
        return torch.ops.sft_cpu.conv2d_direct_path(x, w, [st, st], [dl, dl], g)

    want = "grouped" if torch.ops.sft_cpu.gemm_config().startswith("isa=avx512") else "implicit_gemm"
    for n, c, h, w, k, r, s, st, pd, dl, g in GROUPED_SHAPES:
        assert path(c, k, g, r, s, st if isinstance(st, int) else st[0], dl) == want, (c, g)
    assert path(128, 128, 2) == "implicit_gemm"  # 64 channels per group: a GEMM of its own
    assert path(32, 64, 8) == "implicit_gemm"  # 4 in, 8 out per group
    assert path(24, 24, 24) == "depthwise"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_residual_with_other_layout(backend):
    for c, k in ((8, 16), (3, 16), (16, 3)):
        x = torch.randn(2, c, 9, 9).contiguous(memory_format=torch.channels_last)
        w = torch.randn(k, c, 3, 3)
        res = torch.randn(2, k, 9, 9)  # NCHW residual with a channels_last output
        y = conv2d(x, w, padding=1, activation="relu", residual=res, backend=backend)
        assert_close(y, F.relu(F.conv2d(x.double(), w.double(), padding=1)) + res.double(), k=9 * c)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_nan_propagates(backend):
    for c, k in ((4, 4), (3, 16), (16, 3)):  # generic, few-in and few-out channel kernels
        x = torch.randn(1, c, 6, 6)
        x[0, 1, 2, 3] = float("nan")
        w = torch.randn(k, c, 3, 3)
        for act in (None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh"):
            for xin in (x, x.contiguous(memory_format=torch.channels_last)):
                y = conv2d(xin, w, padding=1, activation=act, backend=backend)
                ref = reference.conv2d(x, w, padding=1, activation=act)
                assert torch.equal(torch.isnan(y), torch.isnan(ref)), act
                w1 = w[:16, :, :1, :1].contiguous()  # 1×1: the few-input kernel for C < 64, K < 256, K % 16 == 0
                y = conv2d(xin, torch.cat([w1] * (16 // w1.shape[0] or 1)), activation=act, backend=backend)
                ref = reference.conv2d(x, torch.cat([w1] * (16 // w1.shape[0] or 1)), activation=act)
                assert torch.equal(torch.isnan(y), torch.isnan(ref)), act
    for c in (32, 40) if backend != "triton" else ():  # depthwise: whole 16-channel groups and a masked tail
        x = torch.randn(1, c, 9, 16)
        x[0, [1, 20, c - 1], [2, 4, 0], [3, 8, 15]] = float("nan")
        w = torch.randn(c, 1, 3, 3)
        for act in (None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu", "gelu_tanh"):
            for xin in (x, x.contiguous(memory_format=torch.channels_last)):
                y = conv2d(xin, w, padding=1, groups=c, activation=act, backend=backend)
                ref = reference.conv2d(x, w, padding=1, groups=c, activation=act)
                assert torch.equal(torch.isnan(y), torch.isnan(ref)), (c, act)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_batch_like_pytorch(backend):
    x, w = torch.randn(0, 4, 8, 8), torch.randn(6, 4, 3, 3)
    y = conv2d(x, w, padding=1, backend=backend)
    assert y.shape == F.conv2d(x, w, padding=1).shape == (0, 6, 8, 8)


def test_default_backend_is_fastest_available():
    name = backends.resolve(None, "conv2d", torch.device("cpu"), torch.float32)
    assert name == ("cpu" if "cpu" in backends.available() else "reference")
    assert backends.resolve(None, "conv2d", torch.device("cpu"), torch.float64) == "reference"


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("SFT_KERNELS_BACKEND", "reference")
    assert backends.resolve(None, "conv2d", torch.device("cpu"), torch.float32) == "reference"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_autograd_matches_pytorch(backend):
    x = torch.randn(2, 4, 7, 7, dtype=torch.float32, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    res = torch.randn(2, 6, 4, 4, requires_grad=True)
    y = conv2d(x, w, b, 2, 1, 1, 2, activation="leaky_relu", negative_slope=0.1, residual=res, backend=backend)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, w, b, res), g)
    y2 = F.leaky_relu(F.conv2d(x, w, b, 2, 1, 1, 2), 0.1) + res
    grads2 = torch.autograd.grad(y2, (x, w, b, res), g)
    for a, e in zip(grads, grads2):
        torch.testing.assert_close(a, e, **tol("fp32"))


# ---------------------------------------------------------------------------------------------- bad input
def _bad(**kw):
    args = dict(input=torch.randn(1, 4, 8, 8), weight=torch.randn(6, 4, 3, 3))
    args.update(kw)
    return args


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (_bad(input=torch.randn(8, 8)), ValueError, "input must be a 4-D"),
    (_bad(weight=torch.randn(6, 4, 3)), ValueError, "weight must be a 4-D"),
    (_bad(weight=torch.randn(6, 4, 3, 3, dtype=torch.float64)), TypeError, "weight dtype"),
    (_bad(input=torch.randint(0, 5, (1, 4, 8, 8))), TypeError, "input must be a floating-point"),
    (_bad(weight=torch.randn(6, 3, 3, 3)), ValueError, "channel mismatch"),
    (_bad(weight=torch.randn(6, 2, 3, 3), groups=3), ValueError, "groups=3 must divide the input channels"),
    (_bad(weight=torch.randn(5, 2, 3, 3), groups=2), ValueError, "must divide the output channels"),
    (_bad(padding=-1), ValueError, "padding must be >= 0"),
    (_bad(stride=0), ValueError, "stride must be >= 1"),
    (_bad(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (_bad(bias=torch.randn(5)), ValueError, "bias must have 6"),
    (_bad(input=torch.randn(1, 4, 2, 2)), ValueError, "too small"),
    (_bad(activation="mish"), ValueError, "activation must be one of"),
    (_bad(residual=torch.randn(1, 6, 7, 7)), ValueError, "residual must have the output's shape"),
    (_bad(backend="tpu"), ValueError, "backend must be one of"),
    (_bad(weight=torch.randn(0, 4, 3, 3)), ValueError, "is empty"),  # had crashed the cpu kernel (K = 0)
    (_bad(weight=torch.randn(6, 4, 0, 3)), ValueError, "is empty"),
    (_bad(input=torch.randn(1, 0, 8, 8), weight=torch.randn(6, 0, 3, 3)), ValueError, "is empty"),  # cpu: bias only
    (_bad(input=torch.randn(1, 4, 8, 8, device="meta")), ValueError, "weight is on cpu but input is on meta"),
])
def test_bad_input(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        conv2d(**kwargs)


def test_modulation_as_a_list_and_winograd_without_a_backend():
    """modulation=[scale, shift] is the tuple's modulation (its tensors had been dropped: a plain conv); and
    algorithm="winograd" with backend=None runs where only the cpu backend can (the autotuner's warm-up had raised
    from the reference backend, which has no Winograd conv)."""
    x, w = torch.randn(1, 16, 12, 12), torch.randn(16, 16, 3, 3)
    s, t = torch.randn_like(x), torch.randn_like(x)
    torch.testing.assert_close(conv2d(x, w, padding=1, modulation=[s, t]), conv2d(x, w, padding=1, modulation=(s, t)),
                               **tol("exact"))
    assert not torch.equal(conv2d(x, w, padding=1, modulation=[s, t]), conv2d(x, w, padding=1))
    if "cpu" in op_backends("conv2d"):
        for algorithm in ("winograd", "winograd_f2"):
            y = conv2d(x, w, padding=1, algorithm=algorithm)
            assert_close(y, F.conv2d(x.double(), w.double(), padding=1), k=144, winograd=True)


def test_repeated_call_keeps_every_check(monkeypatch):
    """A call signature seen before skips re-validation (conv2d's memo): a repeat with anything different
    must still be refused, need grad, or follow SFT_KERNELS_BACKEND."""
    import sys

    monkeypatch.delenv("SFT_KERNELS_BACKEND", raising=False)
    monkeypatch.setenv("SFT_KERNELS_AUTOTUNE", "0")  # the static choice: cpu where it is built
    mod = sys.modules["sft_kernels.ops.conv2d"]
    ran = []
    monkeypatch.setitem(mod._IMPLS, "reference", lambda *a, f=mod._IMPLS["reference"]: ran.append(1) or f(*a))
    x, w, b = torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(6)
    y = conv2d(x, w, b, 1, 1, backend="reference")
    torch.testing.assert_close(conv2d(x, w, b, 1, 1), y, **tol("fp32"))
    torch.testing.assert_close(conv2d(x, w, b, 1, 1), y, **tol("fp32"))  # a memo hit
    for kw, exc, pattern in [
        (dict(stride=True), TypeError, "stride must be an int or a pair"),
        (dict(padding=(True, 1)), ValueError, "padding must be an int or a pair"),
        (dict(bias=b.double()), TypeError, "bias dtype"),
        (dict(activation="mish"), ValueError, "activation must be one of"),
        (dict(activation=["relu"]), ValueError, "activation must be one of"),
        (dict(input=x.to("meta")), ValueError, "on cpu but input is on meta"),
        (dict(pixel_shuffle=4), ValueError, "pixel_shuffle must be"),
    ]:
        args = dict(input=x, weight=w, bias=b, stride=1, padding=1)
        args.update(kw)
        with pytest.raises(exc, match=pattern):
            conv2d(**args)
    wg = w.clone().requires_grad_()
    conv2d(x, wg, b, 1, 1).sum().backward()
    assert wg.grad is not None and wg.grad.abs().sum() > 0
    default_runs = len(ran)
    monkeypatch.setenv("SFT_KERNELS_BACKEND", "reference")
    conv2d(x, w, b, 1, 1)
    conv2d(x, w, b, 1, 1)
    assert len(ran) == default_runs + 2
    if "cpu" in backends.available():
        assert default_runs == 1  # only the explicit reference call, before


def test_memo_keys_residual_and_modulation(monkeypatch):
    """Calls with a residual and a modulation are memoized too: repeats skip validation, while a repeat with a
    residual or modulation of another shape or dtype is still refused and one that needs grad back-propagates."""
    import sys

    mod = sys.modules["sft_kernels.ops.conv2d"]
    validated = []
    real_args = mod.checks.conv_args
    monkeypatch.setattr(mod.checks, "conv_args", lambda *a: validated.append(1) or real_args(*a))
    x, w, b = torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(6)
    res, sc, sh = torch.randn(1, 6, 8, 8), torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    ref = torch.nn.functional.conv2d(x * (sc + 1) + sh, w, b, padding=1) + res
    for _ in range(3):
        torch.testing.assert_close(conv2d(x, w, b, 1, 1, residual=res, modulation=(sc, sh)), ref,
                                   **tol("fp32"))
    assert validated == [1]
    for kw, exc, pattern in [
        (dict(residual=torch.randn(1, 6, 8, 7)), ValueError, "residual must have the output's shape"),
        (dict(residual=res.double()), TypeError, "residual dtype"),
        (dict(modulation=(sc[..., :7], sh)), ValueError, "modulation scale must have"),
        (dict(modulation=(sc, sh.double())), TypeError, "modulation shift dtype"),
    ]:
        args = dict(residual=res, modulation=(sc, sh))
        args.update(kw)
        with pytest.raises(exc, match=pattern):
            conv2d(x, w, b, 1, 1, **args)
    scg = sc.clone().requires_grad_()
    conv2d(x, w, b, 1, 1, residual=res, modulation=(scg, sh)).sum().backward()
    assert scg.grad is not None and scg.grad.abs().sum() > 0


def test_parameters_take_the_direct_call_and_keep_autograd(monkeypatch):
    """A module's weight is an nn.Parameter: under no_grad its conv calls the backend directly (no torch.library
    op, whose dispatch cost a converted SFTNet 1.13-1.29x at 8²-32² inputs), repeats hit the memo, and with grad
    enabled it still goes through the op and back-propagates."""
    import sys

    from sft_kernels.nn import Conv2d

    mod = sys.modules["sft_kernels.ops.conv2d"]
    through_op = []
    real_op = mod.OP.library_op
    monkeypatch.setattr(mod.OP, "library_op", lambda *a: through_op.append(1) or real_op(*a))
    validated = []
    real_args = mod.checks.conv_args
    monkeypatch.setattr(mod.checks, "conv_args", lambda *a: validated.append(1) or real_args(*a))
    conv = Conv2d(4, 6, 3, padding=1, backend="reference")
    x = torch.randn(1, 4, 8, 8)
    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(conv(x), ref, **tol("fp32"))
    assert through_op == [] and validated == [1], "repeats under no_grad should hit the memo"
    conv(x).sum().backward()
    assert through_op == [1] and conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():  # any other subclass still goes through the op
        conv2d(x, conv.weight.detach().as_subclass(_Sub), backend="reference")
    assert through_op == [1, 1]


class _Sub(torch.Tensor):
    pass


def test_backend_dtype_errors():
    if "cpu" not in backends.available():
        pytest.skip("cpu backend not built")
    with pytest.raises(TypeError, match="backend 'cpu' runs sft.conv2d in"):
        conv2d(torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(2, 2, 3, 3, dtype=torch.float64),
               backend="cpu")


def test_unavailable_backend_says_why():
    with pytest.raises(backends.BackendUnavailableError, match="cuda"):
        conv2d(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3), backend="cuda")


def test_autotuned_default_choice_is_cached_and_correct(monkeypatch):
    from sft_kernels.runtime import autotune

    monkeypatch.delenv("SFT_KERNELS_BACKEND", raising=False)
    monkeypatch.setenv("SFT_KERNELS_AUTOTUNE", "1")
    autotune.clear()
    x, w, b = torch.randn(1, 8, 11, 11), torch.randn(16, 8, 3, 3), torch.randn(16)
    y = conv2d(x, w, b, padding=1, activation="relu")
    assert_close(y, reference.conv2d(x.double(), w.double(), b.double(), padding=1, activation="relu"), k=72)
    picked = autotune.choices()
    assert len(picked) == 1 and set(picked.values()) <= set(backends.candidates("conv2d", x.device, x.dtype))
    conv2d(x, w, b, padding=1, activation="relu")
    assert autotune.choices() == picked  # second call: cached, no re-timing
    monkeypatch.setenv("SFT_KERNELS_AUTOTUNE", "0")
    autotune.clear()
    conv2d(x, w, b, padding=1)
    assert autotune.choices() == {}


# ---------------------------------------------------------------------------------------------- Winograd
WINO_SHAPES = [  # (N, C, H, W, K, padding): odd sizes, partial 4×4 tiles, C and K not multiples of 8 or 32
    (1, 16, 9, 11, 16, 1), (2, 64, 13, 7, 40, 1), (1, 20, 6, 6, 17, 2), (1, 64, 32, 32, 64, 0), (3, 24, 5, 5, 70, 1),
    (1, 16, 8, 8, 256, 1), (1, 64, 12, 12, 256, 1),  # K ≫ C: the output-transform scratch outgrows the input one
]


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("shape", WINO_SHAPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act,with_res", [(None, False), ("leaky_relu", True), ("relu", False), ("relu6", True),
                                          ("silu", True), ("hardswish", False), ("gelu", True),
                                          ("gelu_tanh", False)])
def test_winograd_matches_reference(shape, layout, act, with_res):
    n, c, h, w, k, pd = shape
    x, wt, b = torch.randn(n, c, h, w), torch.randn(k, c, 3, 3), torch.randn(k)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, pd, 1, 1, act, 0.2)
    res = torch.randn_like(ref).float() if with_res else None
    if res is not None:
        ref = ref + res.double()
    for algorithm in ("winograd", "winograd_f2", None):  # None = auto, which picks Winograd F(4×4) here
        y = conv2d(_layout(x, layout), wt, b, 1, pd, activation=act, negative_slope=0.2, residual=res,
                   backend="cpu", algorithm=algorithm)
        assert_close(y, ref, k=9 * c, winograd=True, msg=f"{shape} {layout} {algorithm}")
    direct = conv2d(_layout(x, layout), wt, b, 1, pd, activation=act, negative_slope=0.2, residual=res,
                    backend="cpu", algorithm="direct")
    assert_close(direct, ref, k=9 * c)


# (N, C, H, W, K, padding, dilation): sub-grids of unequal sizes, padding not a multiple of the dilation, unequal
# dilations, an image smaller than its dilation (whole sub-grids of padding), no padding
DILATED_SHAPES = [(1, 16, 13, 11, 16, 2, 2), (2, 20, 17, 9, 24, (1, 4), (2, 3)), (1, 16, 23, 21, 32, 6, 6),
                  (1, 32, 9, 11, 16, (0, 1), 4), (1, 16, 3, 3, 16, 6, 6), (3, 16, 9, 12, 17, (5, 0), (3, 2))]


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("shape", DILATED_SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2"])
def test_dilated_winograd_matches_reference(shape, layout, algorithm):
    """A dilated 3×3 conv runs as one Winograd pass over its dilation² sub-grids: with an activation and a
    residual, and with the input modulation read through the same sub-grids."""
    n, c, h, w, k, pd, dl = shape
    torch.manual_seed(0)
    x, wt, b = torch.randn(n, c, h, w), torch.randn(k, c, 3, 3), torch.randn(k)
    scale, shift = torch.randn(n, c, h, w) / 4, torch.randn(n, c, h, w) / 4
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, pd, dl, 1, "leaky_relu", 0.2)
    res = torch.randn_like(ref).float()
    y = conv2d(_layout(x, layout), wt, b, 1, pd, dl, activation="leaky_relu", negative_slope=0.2, residual=res,
               backend="cpu", algorithm=algorithm)
    assert_close(y, ref + res.double(), k=9 * c, winograd=True, msg=f"{shape} {layout}")
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    mod = tuple(t.contiguous(memory_format=fmt) for t in (scale, shift))
    y = conv2d(_layout(x, layout), wt, b, 1, pd, dl, modulation=mod, backend="cpu", algorithm=algorithm)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, pd, dl, modulation=(scale.double(), shift.double()))
    assert_close(y, ref, k=9 * c, winograd=True, msg=f"{shape} {layout} modulated")


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("dl,wino", [(2, True), (6, True), (12, True), (24, False)])
def test_auto_takes_winograd_for_dilated_convs_where_it_pays(dl, wino):
    """ASPP-like 64→64 at 40²: the sub-grids' tiles count together (d = 6: 36 sub-grids of 4 tiles, 144 in all);
    at d = 24 the sub-grids are 1-2 pixels wide, so 4×4 tiles would compute 5.8x the outputs: direct."""
    x = torch.randn(1, 64, 40, 40).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3) / 24
    kw = dict(padding=dl, dilation=dl, backend="cpu")
    from sft_kernels.tools.bench_suite import winograd_eligible
    from sft_kernels.tools.shapes import ConvShape

    assert winograd_eligible(ConvShape("t", 1, 64, 40, 40, 64, 3, 3, padding=dl, dilation=dl)) == wino
    auto = conv2d(x, w, **kw)
    assert torch.equal(auto, conv2d(x, w, algorithm="winograd" if wino else "direct", **kw))


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("algorithm", [None, "direct"])
def test_taps_reading_only_padding_are_dropped(algorithm):
    """Rate 36 on an 8×8 map: only the centre tap reads the image, so the conv is its 1×1 conv, plus the residual
    (the outer taps, set to inf, are never multiplied: as in oneDNN, not 0·inf = NaN); rate 6 with stride 2 on 5×9
    drops the outer rows only and still matches."""
    x = torch.randn(1, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    w, b, res = torch.randn(16, 32, 3, 3), torch.randn(16), torch.randn(1, 16, 8, 8)
    w[:, :, 0], w[:, :, :, 2] = float("inf"), float("inf")
    y = conv2d(x, w, b, 1, 36, 36, residual=res, backend="cpu", algorithm=algorithm)
    assert torch.equal(y, conv2d(x, w[:, :, 1:2, 1:2].contiguous(), b, residual=res, backend="cpu",
                                 algorithm=algorithm))
    x, w = torch.randn(2, 8, 5, 9), torch.randn(8, 8, 3, 3)
    ref = reference.conv2d(x.double(), w.double(), None, 2, (6, 3), (6, 2))
    assert_close(conv2d(x, w, None, 2, (6, 3), (6, 2), backend="cpu", algorithm=algorithm), ref, k=72)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("n,c,hw,algorithm", [(1, 16, 7, "direct"), (1, 16, 12, "winograd"), (1, 512, 7, "direct"),
                                              (1, 256, 10, "winograd_f2"), (1, 256, 14, "winograd_f2"),
                                              (1, 512, 14, "winograd_f2"), (1, 64, 20, "winograd"),
                                              (4, 64, 14, "winograd")], ids=str)
def test_auto_takes_winograd_only_where_it_pays(n, c, hw, algorithm):
    """7×7 maps (4 F(4×4) tiles): direct; 14×14 and 10×10 maps (16 and 9 tiles, mostly padding rows of the GEMMs'
    14-row tiles): F(2×2), also where F(4×4)'s filters are too large (512 channels); 20×20 or four 14×14 maps:
    F(4×4)."""
    from sft_kernels.tools.bench_suite import winograd_eligible
    from sft_kernels.tools.shapes import ConvShape

    wino = algorithm != "direct"
    assert winograd_eligible(ConvShape("t", n, c, hw, hw, c, 3, 3, padding=1)) == wino  # what benchmarks show
    x = torch.randn(n, c, hw, hw).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3) / (3 * c ** 0.5)
    auto = conv2d(x, w, padding=1, backend="cpu")
    assert torch.equal(auto, conv2d(x, w, padding=1, backend="cpu", algorithm=algorithm))
    for other in {"direct", "winograd", "winograd_f2"} - {algorithm}:
        assert not torch.equal(auto, conv2d(x, w, padding=1, backend="cpu", algorithm=other)), other


def test_winograd_errors():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), algorithm="fft")
    with pytest.raises(backends.BackendUnavailableError, match="only the 'cpu' backend implements"):
        conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), backend="reference", algorithm="winograd")
    if "cpu" in op_backends("conv2d"):
        for algorithm in ("winograd", "winograd_f2"):
            with pytest.raises(RuntimeError, match="needs a 3x3 kernel"):
                conv2d(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3), stride=2, backend="cpu", algorithm=algorithm)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("algorithm,k", [("winograd", 16), ("winograd_f2", 16), ("direct", 16),
                                         ("direct", 3)])  # k = 3: the thin few-output kernel's layout
def test_weight_cache_sees_every_weight_change(algorithm, k):
    x = torch.randn(1, 16, 10, 10)
    w = torch.randn(k, 16, 3, 3)
    for change in ("data", "inplace", "new"):
        y0 = conv2d(x, w, padding=1, backend="cpu", algorithm=algorithm)  # fills the cache
        if change == "data":
            w.data.mul_(-2.0)  # .data changes do not bump the version counter
        elif change == "inplace":
            w.add_(1.0)
        else:
            del y0
            w = torch.randn(k, 16, 3, 3)  # may reuse the freed address
        y = conv2d(x, w, padding=1, backend="cpu", algorithm=algorithm)
        assert_close(y, torch.nn.functional.conv2d(x.double(), w.double(), padding=1), k=144,
                     winograd=algorithm == "winograd", msg=change)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_depthwise_tap_layout_cache_sees_every_weight_change():
    """The depthwise path's [R·S][C] tap layout is cached per weight (shared with the fused separable conv): a
    change through .data, in place, or a new tensor at maybe the same address is seen by both."""
    from sft_kernels.ops import separable_conv2d
    x = torch.randn(1, 24, 9, 11).contiguous(memory_format=torch.channels_last)
    w, pw = torch.randn(24, 1, 3, 3), torch.randn(8, 24, 1, 1)
    for change in ("data", "inplace", "new"):
        y0 = conv2d(x, w, padding=1, groups=24, backend="cpu")
        s0 = separable_conv2d(x, w, pw, padding=1, backend="cpu")
        if change == "data":
            w.data.mul_(-2.0)
        elif change == "inplace":
            w.add_(1.0)
        else:
            del y0, s0
            w = torch.randn(24, 1, 3, 3)
        ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1, groups=24)
        assert_close(conv2d(x, w, padding=1, groups=24, backend="cpu"), ref, k=9, msg=change)
        assert_close(separable_conv2d(x, w, pw, padding=1, backend="cpu"),
                     torch.nn.functional.conv2d(ref, pw.double()), k=9 * 24, msg=change)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_weight_cache_sees_one_value_changed_or_two_swapped():
    # 40·643 = 25,720 values: 200 whole rounds of the fingerprint's 128 lanes, then a 120-value tail
    x = torch.randn(1, 643, 5, 6)
    w = torch.randn(40, 643, 1, 1)
    flat = w.data.view(-1)
    edits = [("first", lambda: flat[0].mul_(-1.0)), ("last", lambda: flat[-1].add_(1.0)),
             ("tail", lambda: flat[40 * 643 - 2].add_(0.5)), ("middle", lambda: flat[12345].mul_(3.0)),
             ("swap", lambda: flat[[100, 228]].copy_(flat[[228, 100]].clone()))]
    for name, edit in edits:
        conv2d(x, w, backend="cpu")  # fills the cache
        edit()  # through .data: the version counter does not move
        assert_close(conv2d(x, w, backend="cpu"), F.conv2d(x.double(), w.double()), k=643, msg=name)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("algorithm,k,r", [("direct", 40, 3), ("winograd", 40, 3), ("direct", 40, 1),
                                           ("direct", 3, 3)])  # k = 3: the thin few-output kernel
def test_channels_last_weights_are_packed_once_and_still_checked(algorithm, k, r):
    """model.to(memory_format=torch.channels_last) leaves conv weights channels-last: the cache keys them where
    they lie (a contiguous copy per call had a new address each time: every call re-packed), and still sees a
    change made through .data."""
    x = torch.randn(1, 16, 9, 10).contiguous(memory_format=torch.channels_last)
    w = torch.randn(k, 16, r, r).contiguous(memory_format=torch.channels_last)
    kw = dict(padding=r // 2, backend="cpu", algorithm=algorithm)
    entries = torch.ops.sft_cpu.weight_cache_entries
    conv2d(x, w, **kw)
    before = entries()
    for _ in range(3):
        y = conv2d(x, w, **kw)
    assert entries() == before  # hits
    assert_close(y, F.conv2d(x.double(), w.double(), padding=r // 2), k=16 * r * r, winograd=algorithm == "winograd")
    w.data[k - 1, 15, r - 1, 0] += 1.0  # one value, through .data
    assert_close(conv2d(x, w, **kw), F.conv2d(x.double(), w.double(), padding=r // 2), k=16 * r * r,
                 winograd=algorithm == "winograd")


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("algorithm", ["direct", "winograd"])
def test_version_weight_check_trusts_the_version_counter(algorithm):
    """weight_check("version"): in-place ops and whole-tensor rewrites through .data are seen; an edit of one
    value through .data is not (the documented price), until the full check is back."""
    import sft_kernels

    x = torch.randn(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    w = torch.randn(32, 16, 3, 3)
    kw = dict(padding=1, backend="cpu", algorithm=algorithm)
    ok = lambda y: assert_close(y, F.conv2d(x.double(), w.double(), padding=1), k=144,  # noqa: E731
                                winograd=algorithm == "winograd")
    with sft_kernels.weight_check("version"):
        ok(conv2d(x, w, **kw))
        entries = torch.ops.sft_cpu.weight_cache_entries()
        conv2d(x, w, **kw)
        assert torch.ops.sft_cpu.weight_cache_entries() == entries  # a hit
        with torch.no_grad():
            w[3, 5, 1, 2] += 0.5  # one value that is not sampled, but in place: the version counter moves
        ok(conv2d(x, w, **kw))
        w.data.mul_(-2.0)  # through .data: the counter stays, the sampled values change
        ok(conv2d(x, w, **kw))
        stale = conv2d(x, w, **kw)
        w.data[3, 5, 1, 2] += 10.0  # one value that is not sampled: not seen in this mode
        assert torch.equal(conv2d(x, w, **kw), stale)
    ok(conv2d(x, w, **kw))  # the full check again
    with pytest.raises(ValueError, match="weight check must be one of"):
        sft_kernels.set_weight_check("never")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_output_memory_format_follows_pytorch_for_views(backend):
    from sft_kernels.runtime.checks import is_channels_last_strided

    h = torch.randn(1, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    views = {"cl": h, "channel slice of cl": h[:, :8], "spatial slice of cl": h[..., 1:, 1:],
             "nchw": h.contiguous(), "nchw slice": h.contiguous()[:, :8],
             "permuted": torch.randn(1, 7, 7, 8).permute(0, 3, 2, 1), "C=1": torch.randn(2, 1, 5, 5)}
    for name, x in views.items():
        w = torch.randn(4, x.shape[1], 1, 1)
        ref = F.conv2d(x, w)
        y = conv2d(x, w, backend=backend)
        assert y.stride() == ref.stride(), (name, y.stride(), ref.stride())
        assert is_channels_last_strided(x) == (ref.is_contiguous(memory_format=torch.channels_last)
                                               and not ref.is_contiguous()), name
        assert_close(y, F.conv2d(x.double(), w.double()), k=x.shape[1], msg=name)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("c,k,r,algorithm", [(16, 64, 2, None), (16, 36, 3, None), (8, 16, 2, "direct"),
                                             (20, 64, 2, "winograd")])
def test_pixel_shuffle_epilogue(backend, layout, c, k, r, algorithm):
    if backend != "cpu" and algorithm == "winograd":
        pytest.skip("winograd is cpu-only")
    x, w, b = torch.randn(2, c, 7, 9), torch.randn(k, c, 3, 3), torch.randn(k)
    y_ref = F.pixel_shuffle(F.relu(F.conv2d(x.double(), w.double(), b.double(), padding=1)), r)
    res = torch.randn_like(y_ref).float()
    y = conv2d(_layout(x, layout), w, b, padding=1, activation="relu", residual=res, pixel_shuffle=r,
               backend=backend, algorithm=algorithm)
    assert y.shape == y_ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    assert_close(y, y_ref + res.double(), k=9 * c, winograd=True)


def test_pixel_shuffle_bad_input_and_grad():
    with pytest.raises(ValueError, match="pixel_shuffle must be a positive int"):
        conv2d(torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), pixel_shuffle=2)
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    g = torch.randn(1, 2, 10, 10)
    ga = torch.autograd.grad(conv2d(x, w, padding=1, activation="relu", pixel_shuffle=2), (x, w), g)
    gb = torch.autograd.grad(F.pixel_shuffle(F.relu(F.conv2d(x, w, padding=1)), 2), (x, w), g)
    for a, e in zip(ga, gb):
        torch.testing.assert_close(a, e, **tol("fp32"))


MOD_SHAPES = [(2, 5, 9, 11, 7, 3, 3, 1, 1, 1, 1), (1, 16, 12, 10, 16, 3, 3, 1, 1, 1, 1),
              (1, 12, 10, 9, 6, 3, 2, (2, 1), (0, 2), (1, 2), 3), (1, 8, 7, 7, 12, 1, 1, 1, 0, 1, 1)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", MOD_SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("mod_layout", ["same", "nchw"])
@pytest.mark.parametrize("algorithm", [None, "direct"])
def test_modulation_fused_into_input(backend, shape, layout, mod_layout, algorithm):
    """conv2d(x, modulation=(scale, shift)) == conv2d(x·(scale+1)+shift), whatever the tensors' layouts."""
    if algorithm and backend != "cpu":
        pytest.skip("algorithm= is a cpu-backend option")
    if backend == "triton" and (mod_layout == "nchw" or shape[1] > 8):
        pytest.skip("interpreter: keep to small problems")
    n, c, h, w, k, r, s, st, pd, dl, g = shape
    torch.manual_seed(1)
    x = _layout(torch.randn(n, c, h, w), layout)
    scale, shift = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    if mod_layout == "same":
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        scale, shift = (t.contiguous(memory_format=fmt) for t in (scale, shift))
    wt, b = torch.randn(k, c // g, r, s), torch.randn(k)
    res_shape = (n, k) + tuple(reference.conv2d(x[:1, :1].double(), torch.zeros(1, 1, r, s, dtype=torch.double),
                                                None, st, pd, dl).shape[2:])
    res = torch.randn(res_shape)
    y = conv2d(x, wt, b, st, pd, dl, g, activation="relu", residual=res, modulation=(scale, shift), backend=backend,
               algorithm=algorithm)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, pd, dl, g, "relu", 0.01, res.double(),
                           modulation=(scale.double(), shift.double()))
    assert_close(y, ref, k=c // g * r * s, winograd=backend == "cpu" and algorithm is None and c >= 16)
    assert y.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")


def test_modulation_with_pixel_shuffle_and_grad():
    x = torch.randn(1, 16, 6, 7, dtype=torch.double, requires_grad=True)
    scale = torch.randn(1, 16, 6, 7, dtype=torch.double, requires_grad=True)
    shift = torch.randn(1, 16, 6, 7, dtype=torch.double, requires_grad=True)
    w = torch.randn(16, 16, 3, 3, dtype=torch.double, requires_grad=True)
    fn = lambda x, s, t, w: conv2d(x, w, padding=1, activation="leaky_relu", modulation=(s, t),  # noqa: E731
                                   pixel_shuffle=2, backend="reference")
    torch.autograd.gradcheck(fn, (x, scale, shift, w))
    if "cpu" in CPU_BACKENDS:
        xs, ss, ts, ws = (t.detach().float().contiguous(memory_format=torch.channels_last) if t.dim() == 4 and
                          t is not w else t.detach().float() for t in (x, scale, shift, w))
        y = conv2d(xs, ws, padding=1, activation="leaky_relu", modulation=(ss, ts), pixel_shuffle=2, backend="cpu")
        assert_close(y, fn(x, scale, shift, w).detach(), k=144, winograd=True)


@pytest.mark.parametrize("mod,pattern", [
    ("not a pair", "pair"),
    ((torch.randn(1, 4, 5, 5),), "pair"),
    ((torch.randn(1, 4, 5, 4), torch.randn(1, 4, 5, 5)), "modulation scale"),
    ((torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5, dtype=torch.double)), "modulation shift"),
])
def test_modulation_bad_input(mod, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 4, 3, 3), modulation=mod)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_by_one_on_channel_slices(backend):
    """SFTNet's fused forward feeds 1×1 convs channel slices of a channels_last tensor (pixel stride > C)."""
    h = torch.randn(2, 64, 9, 11).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(32, 32, 1, 1), torch.randn(32)
    for part in (h[:, :32], h[:, 32:]):
        y = conv2d(part, w, b, activation="leaky_relu", negative_slope=0.1, backend=backend)
        assert_close(y, reference.conv2d(part.double(), w.double(), b.double(), activation="leaky_relu",
                                         negative_slope=0.1), k=32)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_winograd_f2_is_more_accurate_than_f4():
    """F(2×2,3×3)'s transform constants are 1 and ½: its rounding error sits between direct's and F(4×4)'s."""
    torch.manual_seed(3)
    x, w = torch.randn(2, 64, 24, 24), torch.randn(64, 64, 3, 3)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    err = {a: (conv2d(x, w, padding=1, backend="cpu", algorithm=a).double() - ref).abs().max().item()
           for a in ("direct", "winograd_f2", "winograd")}
    assert err["winograd_f2"] < err["winograd"], err


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_winograd_f2_with_pixel_shuffle_and_modulation():
    x, sc, sf = (torch.randn(1, 16, 7, 9).contiguous(memory_format=torch.channels_last) for _ in range(3))
    w, b = torch.randn(64, 16, 3, 3), torch.randn(64)
    res = torch.randn(1, 16, 14, 18)
    y = conv2d(x, w, b, padding=1, activation="relu", pixel_shuffle=2, residual=res, modulation=(sc, sf),
               backend="cpu", algorithm="winograd_f2")
    ref = reference.conv2d(x.double(), w.double(), b.double(), 1, 1, 1, 1, "relu", 0.01, res.double(), 2,
                           (sc.double(), sf.double()))
    assert_close(y, ref, k=144, winograd=True)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("c", [136, 520])
def test_one_by_one_reads_dense_channels_last_input_in_place(c):
    """1×1 convs too wide for the thin path run as a GEMM reading dense channels-last pixels in place (C = 520
    too: deeper than 256, its pixels 2080 bytes apart spread over L1 sets)."""
    x = torch.randn(2, c, 9, 11).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(40, c, 1, 1), torch.randn(40)
    y = conv2d(x, w, b, backend="cpu")
    ref = reference.conv2d(x.double(), w.double(), b.double())
    assert_close(y, ref, k=c)
    sliced = torch.randn(2, c, 9, 12).contiguous(memory_format=torch.channels_last)[..., :11]  # not dense: packs
    sliced.copy_(x)
    assert torch.equal(conv2d(sliced, w, b, backend="cpu"), y)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "relu6"])
def test_register_epilogue_keeps_nan_and_signed_zero(act):
    """Whole 14×32 tiles of a 1×1 conv apply bias and activation in registers before storing: NaN must stay NaN
    (max(0, NaN) keeps whichever operand the instruction returns on NaN) and values must equal F.conv2d's path
    exactly as the stack-tile epilogue computes them (same operations)."""
    x = torch.randn(1, 32, 7, 8).contiguous(memory_format=torch.channels_last)  # 56 pixels: four whole tiles
    x[0, :, 3, 5] = float("nan")
    x[0, :, 1, 2] = -1e30  # large negative pre-activations: relu -> 0, leaky -> slope·x
    w, b = torch.randn(64, 32, 1, 1), torch.randn(64)
    y = conv2d(x, w, b, activation=act, negative_slope=0.2, backend="cpu")
    pre = F.conv2d(x.double(), w.double(), b.double())
    ref = {"relu": F.relu, "relu6": F.relu6}[act](pre) if act != "leaky_relu" else F.leaky_relu(pre, 0.2)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert torch.isnan(y[0, :, 3, 5]).all()
    keep = ~torch.isnan(ref)
    assert_close(y[keep], ref[keep], k=32)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("act", ["silu", "hardswish", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("case", [
    (1, 32, 7, 8, 64, 1, 1, 1, "direct"),  # whole 14×32 tiles: the register epilogue leaves these to the tile store
    (1, 64, 12, 12, 64, 3, 1, 1, None),  # Winograd's output transform
    (1, 64, 12, 12, 64, 3, 1, 1, "direct"),  # taps
    (1, 3, 16, 16, 32, 3, 2, 1, None),  # stacked rows (RGB stem)
    (1, 16, 7, 9, 4, 3, 1, 1, None),  # thin: few output channels
    (1, 40, 11, 19, 40, 7, 1, 40, None),  # depthwise 7×7
    (1, 64, 9, 9, 64, 3, 1, 8, None),  # grouped
], ids=str)
def test_silu_hardswish_gelu_on_every_cpu_path(act, case):
    """The vector SiLU (exp by a degree-6 polynomial), hardswish and GELU (erf by Abramowitz & Stegun, or the tanh
    form) in each cpu path's store, on pre-activations from -60 to 60 (exp's clamped range, both tails), with a
    residual after them; NaN stays NaN."""
    n, c, h, w, k, r, st, g, alg = case
    torch.manual_seed(3)
    wino = alg is None and r == 3 and g == 1 and c > 3
    x = (torch.randn(n, c, h, w) * 4).contiguous(memory_format=torch.channels_last)
    if not wino:  # (a NaN reaches a Winograd tile's every output, not only the ones it touches)
        x[0, 0, 1, 1] = float("nan")
    wt, b = torch.randn(k, c // g, r, r), torch.randn(k) * 20
    res = torch.randn(n, k, (h + 2 * (r // 2) - r) // st + 1, (w + 2 * (r // 2) - r) // st + 1)
    y = conv2d(x, wt, b, st, r // 2, 1, g, activation=act, residual=res, backend="cpu", algorithm=alg)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), st, r // 2, 1, g, act, 0.01, res.double())
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    keep = ~torch.isnan(ref)
    assert ref[keep].abs().max() > 40  # the tails were exercised
    assert_close(y[keep], ref[keep], k=c // g * r * r, winograd=wino)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
def test_one_by_one_large_output_streamed_with_epilogue():
    """A shallow GEMM with a >= 4 MiB output writes it with non-temporal stores (bias, activation and
    residual still applied); rows and column panels that are not whole tiles keep normal stores."""
    x = torch.randn(1, 64, 128, 129).contiguous(memory_format=torch.channels_last)  # 16512 pixels
    w, b = torch.randn(80, 64, 1, 1), torch.randn(80)  # 80 = two full 32-wide panels + a 16-wide tail
    res = torch.randn(1, 80, 128, 129).contiguous(memory_format=torch.channels_last)
    y = conv2d(x, w, b, activation="leaky_relu", negative_slope=0.1, residual=res, backend="cpu")
    ref = reference.conv2d(x.double(), w.double(), b.double(), 1, 0, 1, 1, "leaky_relu", 0.1, res.double())
    assert_close(y, ref, k=64)


TAPS_CASES = [  # (C, K, H, W, R, S, padding): stride-1 convs the cpu direct path reads from a padded copy
    (8, 5, 7, 9, 3, 3, 1),
    (16, 40, 13, 30, 3, 3, (1, 0)),
    (24, 64, 6, 17, 5, 5, 2),
    (8, 33, 9, 8, 2, 2, 0),
    (64, 64, 11, 29, 3, 3, 1),
    (16, 16, 4, 4, 1, 3, (0, 3)),
]


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("c,k,h,w,r,s,pad", TAPS_CASES, ids=str)
def test_direct_conv_reads_padded_input_in_place(c, k, h, w, r, s, pad):
    """The direct path of stride-1 convs over a zero-padded copy of the input (every tap one constant offset,
    all taps in one micro-kernel call): against the reference with the full epilogue and an SFT modulation,
    and bit for bit against the packed implicit GEMM (same FMAs in the same k order), which a non-dense
    residual forces."""
    torch.manual_seed(0)
    x = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(k, c, r, s), torch.randn(k)
    y = conv2d(x, wt, b, padding=pad, backend="cpu", algorithm="direct")
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, pad)
    assert_close(y, ref, k=c * r * s)
    res = torch.randn(y.shape).contiguous(memory_format=torch.channels_last)
    sc, sf = (torch.randn(x.shape).contiguous(memory_format=torch.channels_last) * 0.5 for _ in range(2))
    kw = dict(padding=pad, backend="cpu", algorithm="direct", activation="leaky_relu", negative_slope=0.2)
    y = conv2d(x, wt, b, residual=res, modulation=(sc, sf), **kw)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, pad, 1, 1, "leaky_relu", 0.2, res.double(), 1,
                           (sc.double(), sf.double()))
    assert_close(y, ref, k=c * r * s)
    if c * r * s <= 640:  # one K pass (K up to 2.5·KC = 640) on both paths
        wide = torch.zeros(y.shape[0], y.shape[1] + 3, *y.shape[2:]).contiguous(memory_format=torch.channels_last)
        sliced = wide[:, :k]  # same values, channel slice: not dense, so the packed path stores it
        sliced.copy_(res)
        x_mod = torch.addcmul(x + sf, x, sc)
        kw.pop("padding")
        assert torch.equal(conv2d(x_mod, wt, b, padding=pad, residual=sliced, **kw),
                           conv2d(x_mod, wt, b, padding=pad, residual=res, **kw))


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("n,h,w", [(1, 7, 7), (1, 3, 20), (2, 5, 6)], ids=str)
def test_direct_conv_of_a_small_image_splits_channels_between_threads(n, h, w):
    """Too few row bands for two threads: the output channels are split as well (100 = 3 full 32-wide panels and
    a 4-wide one). Every channel must be computed once, bit for bit as one thread computes it."""
    x = torch.randn(n, 16, h, w).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(100, 16, 3, 3), torch.randn(100)
    res = torch.randn(n, 100, h, w).contiguous(memory_format=torch.channels_last)
    kw = dict(padding=1, backend="cpu", algorithm="direct", activation="relu", residual=res)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = conv2d(x, wt, b, **kw)
        torch.set_num_threads(2)
        two = conv2d(x, wt, b, **kw)
    finally:
        torch.set_num_threads(before)
    ref = reference.conv2d(x.double(), wt.double(), b.double(), 1, 1, 1, 1, "relu", 0.0, res.double())
    assert_close(two, ref, k=144)
    assert torch.equal(one, two)


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("c,r,s,stride,pad,dil", [
    (3, 3, 3, 1, 1, 1),  # RGB 3×3: tiles down output columns of a transposed input, taps of 9 k-steps
    (8, 4, 4, 4, 0, 1),  # 4×4 stride-4 patchify, no padding: the input read in place, rows as taps
    (8, 2, 3, (2, 1), 0, (2, 1)),  # in place with dilated rows and overlapping columns
    (16, 3, 2, 2, 0, 1),  # S·C a multiple of 8 but strides differ per axis
    (16, 3, 3, 2, 1, 1),  # strided with padding on 16 channels: rows stacked into a buffer
], ids=str)
def test_few_channel_conv_rows_every_tail(c, r, s, stride, pad, dil):
    """Convs on few input channels run 14-pixel tiles along output rows (or down output columns); the last tile
    of 1-13 pixels runs the short-tile kernel, which reads only its own pixels. Every width from 1 to 15 output
    columns, with the whole epilogue (bias, leaky relu, with and without a residual) and a batch of 2."""
    torch.manual_seed(0)
    sw = stride if isinstance(stride, int) else stride[1]
    for q in range(1, 16):
        w = (q - 1) * sw + s - 2 * (pad if isinstance(pad, int) else pad[1])
        x = torch.randn(2, c, 31, w).contiguous(memory_format=torch.channels_last)  # RGB: 31 rows, 2 bands + 3
        wt, b = torch.randn(40, c, r, s), torch.randn(40)
        kw = dict(stride=stride, padding=pad, dilation=dil)
        ref = reference.conv2d(x.double(), wt.double(), b.double(), stride, pad, dil, 1, "leaky_relu", 0.2)
        res = torch.randn(ref.shape).contiguous(memory_format=torch.channels_last)
        y = conv2d(x, wt, b, activation="leaky_relu", negative_slope=0.2, residual=res, backend="cpu", **kw)
        assert y.shape[-1] == q
        assert_close(y, ref + res.double(), k=c * r * s, msg=f"{q} output columns")
        # no residual: whole tiles of the first 32 output channels store from registers
        y = conv2d(x, wt, b, activation="leaky_relu", negative_slope=0.2, backend="cpu", **kw)
        assert_close(y, ref, k=c * r * s, msg=f"{q} output columns, no residual")


@pytest.mark.skipif("cpu" not in op_backends("conv2d"), reason="cpu backend not built")
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "relu6", "silu", "hardswish", "gelu"])
def test_deep_k_conv_applies_epilogue_once(act):
    """A strided conv with K = C·R·S = 1152 runs its implicit GEMM in several K passes: each pass adds to C,
    bias and activation come once, on the last (whole tiles in registers, the rest through the stack tile)."""
    torch.manual_seed(0)
    x = torch.randn(1, 128, 9, 33).contiguous(memory_format=torch.channels_last)  # 5×17 = 85 output pixels
    w, b = torch.randn(70, 128, 3, 3) * 0.1, torch.randn(70)  # 70 = two whole 32-wide panels + 6
    y = conv2d(x, w, b, stride=2, activation=act, negative_slope=0.2, backend="cpu", algorithm="direct")
    ref = reference.conv2d(x.double(), w.double(), b.double(), 2, 0, 1, 1, act, 0.2)
    assert_close(y, ref, k=1152)
