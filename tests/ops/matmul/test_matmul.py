"""sft.matmul vs float64 references, on every backend and the cpu GEMM's paths."""
import pytest
import torch

from sft_kernels.ops import matmul
from sft_kernels.testing import assert_close

from tests.conftest import op_backends

MM_SHAPES = [
    ((7, 13), (13, 33)),
    ((1, 1), (1, 1)),
    ((65, 129), (129, 47)),
    ((300, 257), (257, 31)),
    ((13,), (13, 5)),
    ((5, 13), (13,)),
    ((13,), (13,)),
    ((3, 7, 9), (9, 11)),
    ((2, 1, 7, 9), (3, 9, 4)),
    ((45, 1000), (1000, 70)),  # K past 2.5·KC: four K passes, whole tiles accumulate C in registers
]


@pytest.mark.parametrize("backend", op_backends("matmul"))
@pytest.mark.parametrize("sa,sb", MM_SHAPES, ids=str)
def test_matmul_matches_reference(backend, sa, sb):
    a, b = torch.randn(sa), torch.randn(sb)
    y = matmul(a, b, backend=backend)
    ref = torch.matmul(a.double(), b.double())
    assert y.shape == ref.shape
    assert_close(y, ref, k=sa[-1])


@pytest.mark.parametrize("backend", op_backends("matmul"))
def test_matmul_noncontiguous_and_transposed(backend):
    a = torch.randn(40, 70)[:, ::2]  # column stride 2
    b = torch.randn(50, 35).t()  # transposed
    assert_close(matmul(a, b, backend=backend), a.double() @ b.double(), k=35)


@pytest.mark.parametrize("backend", op_backends("matmul"))
def test_matmul_empty_and_zero_k(backend):
    assert matmul(torch.randn(0, 4), torch.randn(4, 3), backend=backend).shape == (0, 3)
    assert torch.equal(matmul(torch.randn(3, 0), torch.randn(0, 5), backend=backend), torch.zeros(3, 5))


def test_matmul_bad_input():
    with pytest.raises(ValueError, match="a has 4 columns but b has 5 rows"):
        matmul(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(TypeError, match="b dtype"):
        matmul(torch.randn(3, 4), torch.randn(4, 6, dtype=torch.float64))
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        matmul([[1.0]], torch.randn(1, 1))
    with pytest.raises(ValueError, match="at least 1-D"):
        matmul(torch.tensor(2.0), torch.randn(1))


def test_matmul_autograd():
    a = torch.randn(5, 7, requires_grad=True)
    b = torch.randn(7, 3, requires_grad=True)
    g = torch.randn(5, 3)
    ga, gb = torch.autograd.grad(matmul(a, b), (a, b), g)
    torch.testing.assert_close(ga, g @ b.detach().t())
    torch.testing.assert_close(gb, a.detach().t() @ g)


@pytest.mark.skipif("cpu" not in op_backends("matmul"), reason="cpu backend not built")
@pytest.mark.parametrize("k,pitch", [(8, 32), (32, 56), (64, 88), (256, 280), (264, 288), (576, 600), (512, 512),
                                     (1000, 1024), (1000, 1100)])
def test_matmul_reads_a_in_place(k, pitch):
    """Row-major A (K a multiple of 8) is read in place by the kernel, the 5-row last tile too, unless its rows alias in
    L1 (pitch 1024: every row in one set); it must give bit for bit what the packed path gives (the same FMAs in
    the same order), over one K pass or several (K = 1000)."""
    wide = torch.randn(2, 47, pitch)
    a = wide[..., :k]
    b = torch.randn(2, k, 40)
    y = matmul(a, b, backend="cpu")
    assert_close(y, a.double() @ b.double(), k=k)
    packed = matmul(a.transpose(1, 2).contiguous().transpose(1, 2), b, backend="cpu")  # column-major A: packs
    assert torch.equal(y, packed)
    assert torch.equal(matmul(a.contiguous(), b, backend="cpu"), packed)


@pytest.mark.skipif("cpu" not in op_backends("matmul"), reason="cpu backend not built")
def test_matmul_rows_split_across_threads():
    """Threads take equal shares of whole 14-row panels: every M, including ones below a panel per thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for m in (1, 13, 15, 29, 41, 300, 1025):
            a, b = torch.randn(m, 40), torch.randn(40, 50)
            assert_close(matmul(a, b, backend="cpu"), a.double() @ b.double(), k=40)
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif("cpu" not in op_backends("matmul"), reason="cpu backend not built")
@pytest.mark.parametrize("m,k,n", [(64, 40, 128), (37, 300, 129), (130, 1000, 300), (1, 8, 517), (65, 16, 200)])
def test_matmul_columns_split_across_threads(m, k, n):
    """At least as wide as tall: each thread runs the GEMM on its own NR-aligned column range. Every tile does
    the same FMAs in the same order however the work is split, so 1, 2 and 3 threads give the same bits."""
    before = torch.get_num_threads()
    a, b = torch.randn(m, k), torch.randn(k, n)
    try:
        torch.set_num_threads(1)
        one = matmul(a, b, backend="cpu")
        for threads in (2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(matmul(a, b, backend="cpu"), one), threads
            assert torch.equal(matmul(a.expand(2, m, k), b, backend="cpu"), one.expand(2, m, n)), threads
    finally:
        torch.set_num_threads(before)
    assert_close(one, a.double() @ b.double(), k=k)


@pytest.mark.skipif("cpu" not in op_backends("matmul"), reason="cpu backend not built")
def test_eager_call_runs_in_one_c_call_and_hands_back_the_rest(monkeypatch):
    """Once the cpu backend is chosen, plain float32 2-D CPU operands go to the extension's matmul_eager; anything
    it does not take (other dtypes, grad to record, neg views, zero tensors, subclasses, vmap batches, dispatch
    modes) returns None from it and runs the dispatcher path with the same results."""
    import sys

    from torch.utils._python_dispatch import TorchDispatchMode

    mm = sys.modules["sft_kernels.ops.matmul"]
    a, b = torch.randn(37, 40), torch.randn(40, 29)
    assert_close(matmul(a, b, backend="cpu"), a.double() @ b.double(), k=40)  # chooses, memoizes
    assert mm._EAGER, "the cpu choice should arm the eager path"
    eager, calls = mm._EAGER[0], []
    monkeypatch.setattr(mm, "_EAGER", [lambda x, y: calls.append(1) or eager(x, y)])
    y = matmul(a, b, backend="cpu")
    assert calls == [1] and torch.equal(y, torch.ops.sft_cpu.matmul(a, b))
    assert eager(a.double(), b.double()) is None and eager(a, b.t()) is None
    assert eager(a.requires_grad_(), b) is None
    with torch.no_grad():
        assert eager(a, b) is not None  # no grad to record
    a.requires_grad_(False)
    assert eager(torch._neg_view(a), b) is None
    assert torch.equal(matmul(torch._neg_view(a), b, backend="cpu"), matmul(-a, b, backend="cpu"))
    assert eager(torch.nn.Parameter(a), b) is None
    assert eager(torch._efficientzerotensor(37, 40), b) is None
    seen = []
    torch.vmap(lambda row: seen.append(eager(row.view(1, 40), b)) or row.sum())(a)  # a batched tensor has no storage
    assert seen == [None]

    class Seen(TorchDispatchMode):
        ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Seen():
        assert eager(a, b) is None
        assert torch.equal(matmul(a, b, backend="cpu"), y)
    assert any("matmul" in op for op in Seen.ops), "a dispatch mode must see the op"


@pytest.mark.skipif("cpu" not in op_backends("matmul"), reason="cpu backend not built")
def test_matmul_large_shallow_output_is_streamed_exactly():
    """M·N >= 2^20 with K <= 64 writes C with non-temporal stores: the values must be exactly those of the
    same rows computed below the threshold (same FMAs, only the store differs), tails included."""
    a, b = torch.randn(7500, 32), torch.randn(32, 144)  # 1.08 M outputs; 7500 rows end in a 10-row tile
    y = matmul(a, b, backend="cpu")
    halves = torch.cat([matmul(a[:3750], b, backend="cpu"), matmul(a[3750:], b, backend="cpu")])
    assert torch.equal(y, halves)
    assert_close(y, a.double() @ b.double(), k=32)
