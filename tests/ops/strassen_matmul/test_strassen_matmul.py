"""sft.strassen_matmul vs float64 references, on every backend, and the cpu backend's fused last level."""
import pytest
import torch

from sft_kernels import reference
from sft_kernels.ops import strassen_matmul
from sft_kernels.testing import assert_close
from tests.conftest import op_backends


@pytest.mark.parametrize("backend", op_backends("strassen_matmul"))
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (2, 2, 2), (7, 13, 33), (64, 64, 64), (65, 33, 47), (130, 129, 131),
                                   (256, 100, 3)])
@pytest.mark.parametrize("levels", [None, 1, 3])
def test_strassen_matches_reference(backend, m, k, n, levels):
    a, b = torch.randn(m, k, dtype=torch.float64), torch.randn(k, n, dtype=torch.float64)
    y = strassen_matmul(a.float(), b.float(), levels=levels, cutoff=4, backend=backend)
    depth = 3 if levels is None else levels  # Strassen's error grows with depth (testing.STRASSEN_FACTOR_PER_LEVEL)
    assert y.shape == (m, n)
    assert_close(y, a @ b, k=k, strassen_levels=depth)


def test_strassen_float64_within_its_depth_budget():
    a, b = torch.randn(97, 101, dtype=torch.float64), torch.randn(101, 99, dtype=torch.float64)
    assert_close(reference.strassen_matmul(a, b, cutoff=2), a @ b, k=101, strassen_levels=6)  # 5 levels to size 2


def test_strassen_bad_input():
    with pytest.raises(ValueError, match="a must be a 2-D"):
        strassen_matmul(torch.randn(2, 3, 4), torch.randn(4, 2))
    with pytest.raises(ValueError, match="levels must be"):
        strassen_matmul(torch.randn(3, 4), torch.randn(4, 2), levels=-1)
    with pytest.raises(ValueError, match="a has 4 columns"):
        strassen_matmul(torch.randn(3, 4), torch.randn(5, 2))


@pytest.mark.skipif("cpu" not in op_backends("strassen_matmul"), reason="cpu backend not built")
@pytest.mark.parametrize("m,k,n", [(2, 2, 2), (30, 46, 66), (64, 64, 64), (130, 258, 98), (290, 36, 34)])
def test_strassen_abc_fused_level(m, k, n):
    """The fused one-level kernel (sums in packing, ±products in the stores) against float64."""
    a, b = torch.randn(m, k, dtype=torch.double), torch.randn(k, n, dtype=torch.double)
    y = torch.ops.sft_cpu.strassen_abc(a.float(), b.float())
    assert_close(y, a @ b, k=k * 2)  # one Strassen level: operands are sums of two blocks
    big = torch.randn(m + 2, k + 4)[1:-1, 2:-2]  # a strided view is made contiguous
    assert_close(torch.ops.sft_cpu.strassen_abc(big, b.float()), big.double() @ b, k=k * 2)
    with pytest.raises(RuntimeError, match="even"):
        torch.ops.sft_cpu.strassen_abc(torch.randn(3, 4), torch.randn(4, 2))
