"""sft.conv2d vs torch.nn.functional.conv2d on every SFTNet conv shape (128×128 LR; --quick: 32×32)."""
import pytest

from sft_kernels.tools.bench_suite import conv_candidates
from sft_kernels.tools.shapes import quick_conv_shapes, sftnet_conv_shapes

SHAPES = {s.name: s for s in sftnet_conv_shapes()}
QUICK = {s.name: s for s in quick_conv_shapes()}
IMPLS = ["torch nchw", "torch cl", "sft cpu nchw", "sft cpu cl", "sft cpu cl direct"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(SHAPES))
def test_conv2d(benchmark, record_flops, request, name, impl):
    shape = (QUICK if request.config.getoption("--quick") else SHAPES)[name]
    fns = conv_candidates(shape)
    if impl not in fns:
        pytest.skip(f"{impl} is not available here")
    record_flops(name, impl, shape.flops)
    benchmark.pedantic(fns[impl], rounds=5 if shape.flops > 2e9 else 20, warmup_rounds=1)
