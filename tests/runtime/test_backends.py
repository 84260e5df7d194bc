"""Backend discovery and fallbacks: the package imports and works without its compiled parts, and every
SIMD micro-kernel (AVX-512, AVX2, portable) gives the same results."""
import os
import subprocess
import sys
import textwrap

import pytest

from sft_kernels import backends


def _run(code, **env):
    full = dict(os.environ, **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_reports_every_backend_with_a_reason():
    st = backends.status()
    assert set(st) == set(backends.BACKENDS)
    assert st["reference"][0]
    for name, (ok, why) in st.items():
        assert why, name


def test_no_ext_falls_back_to_reference():
    out = _run("""
        import torch, sft_kernels
        from sft_kernels import backends
        assert "cpu" not in backends.available(), backends.available()
        print(backends.status()["cpu"][1])
        x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
        assert backends.resolve(None, "conv2d", x.device, x.dtype) == "reference"
        y = sft_kernels.ops.conv2d(x, w, padding=1)
        torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, padding=1))
        try:
            sft_kernels.ops.conv2d(x, w, backend="cpu")
        except backends.BackendUnavailableError as e:
            print("ERR", e)
    """, SFT_KERNELS_NO_EXT="1")
    assert "disabled by SFT_KERNELS_NO_EXT=1" in out
    assert "ERR backend 'cpu' is not available here" in out


def _cpu_has(flag):
    try:
        return flag in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
def test_every_isa_kernel_is_correct(isa):
    if isa == "avx512" and not _cpu_has("avx512f"):
        pytest.skip("no AVX-512 here")
    if isa == "avx2" and not _cpu_has("avx2"):
        pytest.skip("no AVX2 here")
    out = _run("""
        import torch, sft_kernels
        from sft_kernels.testing import assert_close
        sft_kernels.backends.cpu_ext()
        print(torch.ops.sft_cpu.gemm_config())
        torch.manual_seed(0)
        for (n, c, h, w, k, s, g, act) in [(2, 5, 13, 11, 7, 1, 1, "relu"), (1, 16, 9, 9, 40, 2, 2, "leaky_relu"),
                                           (1, 64, 10, 10, 64, 1, 1, None)]:
            for cl in (False, True):
                x, wt, b = torch.randn(n, c, h, w), torch.randn(k, c // g, 3, 3), torch.randn(k)
                xin = x.contiguous(memory_format=torch.channels_last) if cl else x
                y = sft_kernels.ops.conv2d(xin, wt, b, s, 1, 1, g, activation=act, backend="cpu")
                ref = sft_kernels.reference.conv2d(x.double(), wt.double(), b.double(), s, 1, 1, g, act)
                assert_close(y, ref, k=c // g * 9)
        a, bm = torch.randn(67, 301), torch.randn(301, 45)
        assert_close(sft_kernels.ops.matmul(a, bm, backend="cpu"), a.double() @ bm.double(), k=301)
        print("OK")
    """, SFT_KERNELS_ISA=isa)
    assert f"isa={isa}" in out and "OK" in out


@pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
def test_blocking_override_keeps_results():
    out = _run("""
        import torch, sft_kernels
        from sft_kernels.testing import assert_close
        sft_kernels.backends.cpu_ext()
        print(torch.ops.sft_cpu.gemm_config())
        a, b = torch.randn(100, 300), torch.randn(300, 70)
        assert_close(sft_kernels.ops.matmul(a, b, backend="cpu"), a.double() @ b.double(), k=300)
        x, w = torch.randn(1, 24, 9, 9), torch.randn(20, 24, 3, 3)
        assert_close(sft_kernels.ops.conv2d(x, w, padding=1, backend="cpu"),
                     torch.nn.functional.conv2d(x.double(), w.double(), padding=1), k=216)
        # direct path: K slices of 16 cut the runs that merge a kernel row's taps (3 taps × 24 channels)
        xc = x.contiguous(memory_format=torch.channels_last)
        assert_close(sft_kernels.ops.conv2d(xc, w, padding=1, backend="cpu", algorithm="direct"),
                     torch.nn.functional.conv2d(x.double(), w.double(), padding=1), k=216)
        x4, w4 = torch.randn(1, 8, 18, 17), torch.randn(32, 8, 4, 4)  # cond_in-like: 4 taps × 8 channels per row
        assert_close(sft_kernels.ops.conv2d(x4, w4, stride=4, padding=1, backend="cpu"),
                     torch.nn.functional.conv2d(x4.double(), w4.double(), stride=4, padding=1), k=128)
        print("OK")
    """, SFT_KERNELS_GEMM_BLOCKING="28,16,64")
    assert "MC=28 KC=16 NC=64" in out and "OK" in out


def test_import_does_not_load_dynamo():
    """`import sft_kernels` (ops, nn, convert) must not import torch._dynamo: that alone cost 1.3 s and ~900
    modules, and slowed every garbage collection of the user's process."""
    import subprocess
    import sys

    code = ("import sys, sft_kernels; from sft_kernels import ops, nn, transforms; "
            "print('torch._dynamo' in sys.modules, 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_converted_models_first_forward_does_not_load_dynamo():
    """The autotuner times its candidates as the call will run them (directly, under no_grad): through the library
    op, their first call had imported torch._dynamo, ~2 s of a converted model's first forward."""
    import subprocess
    import sys

    code = ("import sys, torch, sft_kernels\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),\n"
            "                        torch.nn.ConvTranspose2d(8, 4, 2, stride=2)).eval()\n"
            "sft_kernels.convert_(m)\n"
            "with torch.no_grad():\n"
            "    for _ in range(12): m(torch.rand(1, 3, 16, 16))\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_memoized_choice_follows_env_and_errors_repeat(monkeypatch):
    import torch

    from sft_kernels import ops
    mm = sys.modules["sft_kernels.ops.matmul"]
    ran = []
    for name in list(mm._IMPLS):
        monkeypatch.setitem(mm._IMPLS, name, lambda a, b, f=mm._IMPLS[name], n=name: ran.append(n) or f(a, b))
    a, b = torch.randn(5, 3), torch.randn(3, 4)
    default = backends.resolve(None, "matmul", a.device, a.dtype)
    assert backends.resolve_for(None, "matmul", a) == default  # memoized before the variable is set
    monkeypatch.setenv("SFT_KERNELS_BACKEND", "reference")
    for _ in range(2):
        torch.testing.assert_close(ops.matmul(a, b), a @ b)
    assert ran == ["reference", "reference"]
    monkeypatch.delenv("SFT_KERNELS_BACKEND")
    assert backends.resolve_for(None, "matmul", a) == default
    for _ in range(2):  # a refused request is not memoized into a success
        with pytest.raises(ValueError, match="backend must be one of"):
            ops.matmul(a, b, backend="nope")
        with pytest.raises(TypeError, match="runs sft.matmul in"):
            backends.resolve_for("reference" if default == "reference" else "cpu", "matmul", a.to(torch.int32))
