"""sft_kernels.ops.conv2d.triton (kernel + launcher) against F.conv2d computed in float64 on the same data.

Without a CUDA GPU the kernel runs through the Triton interpreter (TRITON_INTERPRET=1, set below
before the kernel module is imported); with one, the same tests run compiled on it.
The interpreter costs milliseconds per program x K-iteration, so the shapes are small and the default
interpreter tiles cover most of them in one or two programs (the whole file takes a few seconds).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # read when @triton.jit decorates: before the kernel import

pytest.importorskip("triton")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from sft_kernels.runtime import triton as sft_triton  # noqa: E402
from sft_kernels.testing import assert_close, tolerance  # noqa: E402

_ok, _why = sft_triton.status()
if not _ok:
    pytest.skip(f"Triton backend unavailable: {_why}", allow_module_level=True)

tconv = sft_triton.load("sft_kernels.ops.conv2d.triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _reference(x, w, b, stride, padding, dilation, groups, activation, slope, residual):
    """F.conv2d in float64 on the same (already rounded) data, then the epilogue in float64."""
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), stride, padding, dilation, groups)
    if activation == "relu":
        y = torch.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, slope)
    if residual is not None:
        y = y + residual.double()
    return y


def _make(case, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c, h, wd, k, r, s = case["shape"]
    groups = case.get("groups", 1)
    layout = case.get("layout", "nchw")
    if layout == "channels_last":
        x = torch.randn(n, c, h, wd, generator=g).to(memory_format=torch.channels_last)
    elif layout == "slice":  # non-contiguous: a spatial crop of a bigger NCHW tensor
        x = torch.randn(n, c, h + 1, wd + 2, generator=g)[:, :, 1:, 2:]
    elif layout == "permuted":  # non-contiguous and neither NCHW nor NHWC: (C, N, W, H) storage
        x = torch.randn(c, n, wd, h, generator=g).permute(1, 0, 3, 2)
    else:
        x = torch.randn(n, c, h, wd, generator=g)
    w = torch.randn(k, c // groups, r, s, generator=g) / (c // groups * r * s) ** 0.5
    if case.get("weight_view"):  # non-contiguous weight: (R, S, C, K) storage
        w = w.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)
    b = None
    if case.get("bias", True):
        b = torch.randn(2 * k, generator=g)[::2] if case.get("bias_strided") else torch.randn(k, generator=g)
    x, w = x.to(DEVICE, dtype), w.to(DEVICE, dtype)
    b = None if b is None else b.to(DEVICE, dtype)
    return x, w, b


def _out_hw(case):
    n, c, h, wd, k, r, s = case["shape"]
    sh, sw = _pair(case.get("stride", 1))
    ph, pw = _pair(case.get("padding", 0))
    dh, dw = _pair(case.get("dilation", 1))
    return (h + 2 * ph - dh * (r - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (s - 1) - 1) // sw + 1


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _residual(case, dtype, seed=1):
    kind = case.get("residual")
    if kind is None:
        return None
    n, k = case["shape"][0], case["shape"][4]
    p, q = _out_hw(case)
    g = torch.Generator().manual_seed(seed)
    if kind == "contiguous":
        res = torch.randn(n, k, p, q, generator=g)
    elif kind == "channels_last":
        res = torch.randn(n, k, p, q, generator=g).to(memory_format=torch.channels_last)
    elif kind == "transposed":  # H and W swapped in storage
        res = torch.randn(n, k, q, p, generator=g).transpose(2, 3)
    elif kind == "sliced":
        res = torch.randn(n, 2 * k, p, q + 3, generator=g)[:, ::2, :, 3:]
    else:
        raise AssertionError(kind)
    return res.to(DEVICE, dtype)


def _run_and_check(case, dtype, **kw):
    x, w, b = _make(case, dtype)
    res = _residual(case, dtype)
    stride, padding, dilation = (_pair(case.get(a, d)) for a, d in (("stride", 1), ("padding", 0), ("dilation", 1)))
    groups = case.get("groups", 1)
    act, slope = case.get("activation"), case.get("slope", 0.01)
    y = tconv.conv2d(x, w, b, stride, padding, dilation, groups, act, slope, res, **kw)
    ref = _reference(x, w, b, stride, padding, dilation, groups, act, slope, res)
    assert y.shape == ref.shape and y.dtype == dtype and y.device == x.device
    # the memory format F.conv2d would return
    want_cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert y.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)
    k_red = w.shape[1] * w.shape[2] * w.shape[3]
    return y, ref, k_red


# (N, C, H, W, K, R, S); every case has batch 2 and odd / non-square sizes somewhere
CASES = {
    "odd_3x3_pad": dict(shape=(2, 5, 7, 9, 4, 3, 3), padding=1),
    "stride2_relu_nobias": dict(shape=(2, 8, 13, 11, 16, 3, 3), stride=2, padding=1, bias=False, activation="relu"),
    "dilation2_leaky": dict(shape=(2, 6, 11, 12, 8, 3, 3), padding=2, dilation=2, activation="leaky_relu", slope=0.2),
    "groups2_relu_residual": dict(shape=(2, 10, 9, 9, 12, 3, 3), padding=1, groups=2, activation="relu",
                                  residual="contiguous"),
    "depthwise_x2": dict(shape=(2, 4, 9, 8, 8, 3, 3), padding=1, groups=4, activation="leaky_relu", slope=0.2),
    "pointwise_1x1_residual": dict(shape=(2, 16, 8, 7, 24, 1, 1), residual="sliced"),
    "factorized_1x3": dict(shape=(2, 7, 9, 10, 6, 1, 3), padding=(0, 1)),
    "rect_5x3_mixed": dict(shape=(2, 5, 13, 9, 7, 5, 3), stride=(2, 1), padding=(2, 0), dilation=(1, 2)),
    "channels_last": dict(shape=(2, 8, 10, 9, 12, 3, 3), padding=1, layout="channels_last",
                          activation="relu", residual="channels_last"),
    "slice_input": dict(shape=(2, 6, 9, 11, 5, 3, 3), padding=1, layout="slice", residual="transposed"),
    "permuted_input_weight_bias_views": dict(shape=(2, 9, 8, 10, 10, 3, 3), stride=2, layout="permuted",
                                             weight_view=True, bias_strided=True, activation="leaky_relu", slope=0.2),
    "valid_no_padding": dict(shape=(2, 12, 7, 7, 20, 3, 3), activation="relu", residual="transposed"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fp32(name):
    y, ref, k = _run_and_check(CASES[name], torch.float32)
    assert_close(y, ref, k, msg=name)


HALF_CASES = ["groups2_relu_residual", "channels_last", "permuted_input_weight_bias_views", "rect_5x3_mixed"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", HALF_CASES)
def test_half(name, dtype):
    y, ref, k = _run_and_check(CASES[name], dtype)
    assert_close(y, ref, k, msg=f"{name} {dtype}")


def test_small_tiles_multi_program():
    """Tiles much smaller than the problem: many M/N tiles (grouped order with a partial last group),
    several K-iterations, overhang on all three GEMM dimensions."""
    case = dict(shape=(2, 5, 9, 9, 24, 3, 3), padding=1, groups=1, activation="relu", residual="sliced")
    cfg = tconv.TileConfig(BLOCK_M=32, BLOCK_N=16, BLOCK_K=16, GROUP_M=4, num_warps=4, num_stages=2)
    y, ref, k = _run_and_check(case, torch.float32, config=cfg)
    assert_close(y, ref, k)
    # a dict overrides fields of the default; a name picks a shipped config
    y2, _, _ = _run_and_check(case, torch.float32, config={"BLOCK_K": 16})
    assert_close(y2, ref, k)
    y3, _, _ = _run_and_check(case, torch.float32, config="m64_n64_k32")
    assert_close(y3, ref, k)


def test_int64_indexing_path(monkeypatch):
    """The 64-bit address path (taken for tensors spanning >= 2**31 elements), forced on a small problem."""
    monkeypatch.setattr(tconv, "_span", lambda t: 2**31)
    monkeypatch.setattr(tconv, "_PLANS", {})  # a plan made earlier for this signature would skip _span
    y, ref, k = _run_and_check(CASES["groups2_relu_residual"], torch.float32)
    assert_close(y, ref, k)


def test_repeat_calls_reuse_the_plan_and_new_signatures_get_their_own(monkeypatch):
    monkeypatch.setattr(tconv, "_PLANS", {})
    x = torch.randn(1, 8, 6, 7, device=DEVICE)
    w, b = torch.randn(8, 8, 3, 3, device=DEVICE), torch.randn(8, device=DEVICE)
    y1 = tconv.conv2d(x, w, b, 1, 1, activation="leaky_relu", negative_slope=0.1)
    assert len(tconv._PLANS) == 1
    y2 = tconv.conv2d(x.clone(), w, b, 1, 1, activation="leaky_relu", negative_slope=0.3)  # slope is not planned
    assert len(tconv._PLANS) == 1
    assert_close(y2, _reference(x, w, b, 1, 1, 1, 1, "leaky_relu", 0.3, None), k=72)
    assert not torch.equal(y1, y2)
    tconv.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, 1, 1)  # other strides: another plan
    tconv.conv2d(x, w, None, 1, 1)  # no bias: another plan
    assert len(tconv._PLANS) == 3
    with pytest.raises(ValueError, match="stride"):  # a bad call is checked, never served from the cache
        tconv.conv2d(x, w, b, 0, 1)


def test_tf32_precision_flag():
    y, ref, k = _run_and_check(CASES["odd_3x3_pad"], torch.float32, input_precision="tf32")
    atol, rtol = tolerance(torch.float16, k, ref.abs().max().item())  # tf32 keeps fp16's 10 mantissa bits
    torch.testing.assert_close(y.double(), ref, atol=atol, rtol=rtol)


def test_nan_propagates_like_torch():
    case = dict(shape=(2, 4, 7, 7, 6, 3, 3), padding=1, activation="relu")
    x, w, b = _make(case, torch.float32)
    x[0, 1, 3, 3] = float("nan")
    for act in ("relu", "leaky_relu"):
        y = tconv.conv2d(x, w, b, 1, 1, 1, 1, act, 0.2)
        ref = _reference(x, w, b, 1, 1, 1, 1, act, 0.2, None)
        assert torch.equal(torch.isnan(y), torch.isnan(ref))
        atol, rtol = tolerance(torch.float32, 36, ref.nan_to_num().abs().max().item())  # K = 4 channels x 3x3
        torch.testing.assert_close(y.double(), ref, atol=atol, rtol=rtol, equal_nan=True)


def test_empty_batch():
    x = torch.randn(0, 4, 7, 7, device=DEVICE)
    w = torch.randn(6, 4, 3, 3, device=DEVICE)
    y = tconv.conv2d(x, w, None, 1, 1)
    assert y.shape == (0, 6, 7, 7)


def test_bad_arguments():
    x = torch.randn(2, 4, 7, 7, device=DEVICE)
    w = torch.randn(6, 4, 3, 3, device=DEVICE)
    with pytest.raises(ValueError, match="input"):
        tconv.conv2d(x[0], w)
    with pytest.raises(ValueError, match="weight"):
        tconv.conv2d(x, w.half())
    with pytest.raises(ValueError, match="dtype"):
        tconv.conv2d(x.double(), w.double())
    with pytest.raises(ValueError, match="activation"):
        tconv.conv2d(x, w, activation="mish")
    with pytest.raises(ValueError, match="residual"):
        tconv.conv2d(x, w, residual=torch.randn(2, 6, 7, 7, device=DEVICE))  # output is 5x5
    with pytest.raises(ValueError, match="groups"):
        tconv.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match="config"):
        tconv.conv2d(x, w, config="no_such_config")
    with pytest.raises(ValueError, match="BLOCK_M"):
        tconv.conv2d(x, w, config={"BLOCK_M": 24})


def test_loader_import_does_not_import_triton():
    """sft_kernels/runtime/triton.py itself must not import Triton (loaded alone, by path)."""
    init = Path(sft_triton.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('probe', {str(init)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "assert 'triton' not in sys.modules, 'importing the package imported triton'\n"
        "assert callable(mod.status) and callable(mod.load)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter-only trap")
def test_runs_when_triton_was_imported_before_the_interpreter_flag():
    """torch.compile on a CPU imports triton before anyone sets TRITON_INTERPRET: triton.language's
    own @jit helpers are then not interpretable, so the kernel must not call them."""
    root = Path(sft_triton.__file__).parents[2]
    code = (
        "import torch, triton, torch.nn.functional as F\n"
        "from sft_kernels.runtime import triton as t\n"
        "m = t.load('sft_kernels.ops.conv2d.triton')\n"
        "x = torch.randn(2, 3, 6, 5); w = torch.randn(4, 3, 3, 3)\n"
        "y = m.conv2d(x, w, torch.randn(4), 1, 1, 1, 1, 'relu')\n"
        "assert y.shape == (2, 4, 6, 5)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_status_shape():
    ok, why = sft_triton.status()
    assert ok is True and isinstance(why, str) and why
