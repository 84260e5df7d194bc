"""sft.sft_layer (a whole float SFT layer) against its float64 definition on the cpu and reference backends, in
float32 and bf16: SFTNet's shape, channel and pixel tails, mid maps of 5-40 channels, no biases; the bf16 form equal
to the two ops it replaces; opcheck; bad inputs."""
import pytest
import torch

from sft_kernels import ops
from sft_kernels.backends import bf16_available
from sft_kernels.ops.sft_layer import _op
from sft_kernels.ops.sft_layer import reference as ref
from sft_kernels.testing import assert_close, tol
from tests.conftest import op_backends

BACKENDS = op_backends("sft_layer", torch.float32)
CASES = [  # n, k (x's channels), c (cond's), cs, ct (the mid maps'), h, w
    (1, 64, 32, 32, 32, 16, 16),  # SFTNet's shape
    (2, 40, 20, 12, 40, 9, 11),  # tails everywhere, unequal mid maps
    (1, 96, 8, 7, 5, 5, 3),  # three panels, fewer pixels than a block
    (1, 16, 40, 33, 8, 4, 4),  # two chunks of cond, a 33-channel mid map
]


def _data(case, seed=0, biases=True):
    n, k, c, cs, ct, h, w = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, h, w, generator=g)
    cond = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    w0_s, w0_t = torch.randn(cs, c, 1, 1, generator=g) * 0.3, torch.randn(ct, c, 1, 1, generator=g) * 0.3
    w1_s, w1_t = torch.randn(k, cs, 1, 1, generator=g) * 0.2, torch.randn(k, ct, 1, 1, generator=g) * 0.2
    bias = (lambda m: torch.randn(m, generator=g)) if biases else (lambda m: None)
    return x, cond, w0_s, bias(cs), w0_t, bias(ct), w1_s, bias(k), w1_t, bias(k)


def _definition(args, bf16):
    """float64 of the definition; with bf16 the mid maps rounded from their float32 values, as the kernels do."""
    x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t = args
    d = lambda t: None if t is None else t.double()  # noqa: E731
    r = (lambda t: t.to(torch.bfloat16).double()) if bf16 else d
    f = torch.nn.functional
    mid_s = f.leaky_relu(f.conv2d(r(cond), r(w0_s), d(b0_s)), 0.1).float()
    mid_t = f.leaky_relu(f.conv2d(r(cond), r(w0_t), d(b0_t)), 0.1).float()
    return d(x) * (f.conv2d(r(mid_s), r(w1_s), d(b1_s)) + 1) + f.conv2d(r(mid_t), r(w1_t), d(b1_t))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("biases", [True, False])
def test_matches_definition(backend, case, bf16, biases):
    if bf16 and backend == "cpu" and not bf16_available():
        pytest.skip("no AMX-BF16 here")
    args = _data(case, biases=biases)
    y = ops.sft_layer(*args, negative_slope=0.1, bf16=bf16, backend=backend)
    assert y.shape == args[0].shape and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, _definition(args, bf16), k=case[2] + case[3] + case[4], msg=f"{backend} {case} bf16={bf16}")


@pytest.mark.skipif(not bf16_available(), reason="no AMX-BF16 here")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bf16_equals_the_ops_it_replaces(case):
    """The same bits as the first convs' bf16 conv (LeakyReLU in its store) then sft_modulation(bf16=True)."""
    x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t = _data(case, seed=1)
    h = ops.conv2d(cond, torch.cat([w0_s, w0_t]), torch.cat([b0_s, b0_t]), activation="leaky_relu",
                   negative_slope=0.1, algorithm="bf16", backend="cpu")
    cs = w0_s.shape[0]
    two = ops.sft_modulation(x, h[:, :cs], w1_s, b1_s, h[:, cs:], w1_t, b1_t, bf16=True, backend="cpu")
    one = ops.sft_layer(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, negative_slope=0.1, bf16=True,
                        backend="cpu")
    assert torch.equal(one, two)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
def test_opcheck():
    args = _data(CASES[1])
    torch.library.opcheck(_op, (*args, 0.1, False, "cpu"), **tol("fp32"))
    if bf16_available():
        torch.library.opcheck(_op, (*args, 0.1, True, "cpu"), **tol("fp32"))


def test_bad_inputs():
    args = list(_data(CASES[2]))
    with pytest.raises(TypeError, match="bf16 must be a bool"):
        ops.sft_layer(*args, bf16="yes")
    with pytest.raises(ValueError, match="w1_t must be a 1×1 conv weight"):
        ops.sft_layer(*args[:8], args[8][:, :3], args[9])
    with pytest.raises(ValueError, match="cond must have x's batch and spatial size"):
        ops.sft_layer(args[0], args[1][..., :2], *args[2:])
