"""sft.matmul vs torch.matmul on square sizes and the conv-shaped GEMMs of SFTNet."""
import pytest
import torch

from sft_kernels import backends, ops
from sft_kernels.tools.shapes import GEMM_CONV, GEMM_SQUARE

SIZES = [(n, n, n) for n in GEMM_SQUARE] + GEMM_CONV


@pytest.mark.parametrize("impl", ["torch", "sft cpu"])
@pytest.mark.parametrize("mnk", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_matmul(benchmark, record_flops, request, mnk, impl):
    m, n, k = mnk
    if request.config.getoption("--quick"):
        m, n, k = min(m, 512), n, min(k, 512)
    a, b = torch.randn(m, k), torch.randn(k, n)
    if impl == "torch":
        fn = lambda: torch.matmul(a, b)  # noqa: E731
    elif backends.supports("cpu", "matmul", "cpu", torch.float32):
        fn = lambda: ops.matmul(a, b, backend="cpu")  # noqa: E731
    else:
        pytest.skip("cpu backend not built")
    record_flops(f"{m}x{n}x{k}", impl, 2 * m * n * k)
    benchmark.pedantic(fn, rounds=5 if m * n * k > 1e9 else 20, warmup_rounds=1)
