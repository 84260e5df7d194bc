"""sft.sft_modulation (an SFT layer's float output for the conv that reads it) against the float64 reference on every
backend: whole 7-pixel × 32-channel tiles, pixel and channel tails, channel slices of one wider map read in place,
NCHW inputs, batches; the portable loop under a forced ISA; the fused SFTNet forward with it against the unfused
one; opcheck; bad inputs."""
import pytest
import torch

from sft_kernels import ops
from sft_kernels.backends import bf16_available
from sft_kernels.ops.sft_modulation import reference as ref
from sft_kernels.testing import assert_close, tol
from tests.conftest import op_backends, run_fresh

BACKENDS = op_backends("sft_modulation", torch.float32)
CASES = [  # n, k (x's channels), cs, ct (the mid maps' channels), h, w
    (1, 64, 32, 32, 16, 16),  # SFTNet's shape: whole tiles and panels only
    (2, 40, 12, 20, 9, 11),  # a 40-channel tail (32 + 8), pixel tails, unequal mid maps
    (1, 96, 7, 5, 5, 3),  # three panels, fewer pixels than a tile
    (1, 16, 8, 8, 4, 4),  # under one panel
]


def _data(case, seed=0, sliced=False):
    n, k, cs, ct, h, w = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, h, w, generator=g)
    if sliced:  # both mid maps halves of one channels_last map, as SFTNet's first convs write them
        both = torch.randn(n, cs + ct, h, w, generator=g).contiguous(memory_format=torch.channels_last)
        ms, mt = both[:, :cs], both[:, cs:]
    else:
        ms, mt = torch.randn(n, cs, h, w, generator=g), torch.randn(n, ct, h, w, generator=g)
    convs = [(torch.randn(k, c, 1, 1, generator=g) * 0.2, torch.randn(k, generator=g)) for c in (cs, ct)]
    return x, ms, mt, convs


def _reference(x, ms, mt, convs):
    (ws, bs), (wt, bt) = convs
    return ref.sft_modulation(x.double(), ms.double(), ws.double(), bs.double(), mt.double(), wt.double(),
                              bt.double())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "sliced"])
def test_matches_reference(backend, case, layout):
    x, ms, mt, convs = _data(case, sliced=layout == "sliced")
    if layout == "channels_last":
        x, ms, mt = (t.contiguous(memory_format=torch.channels_last) for t in (x, ms, mt))
    (ws, bs), (wt, bt) = convs
    y = ops.sft_modulation(x, ms, ws, bs, mt, wt, bt, backend=backend)
    assert y.shape == x.shape and y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, _reference(x, ms, mt, convs), k=case[2] + case[3], msg=f"{backend} {case} {layout}")
    y = ops.sft_modulation(x, ms, ws, None, mt, wt, None, backend=backend)  # no biases
    assert_close(y, _reference(x, ms, mt, [(ws, torch.zeros_like(bs)), (wt, torch.zeros_like(bt))]),
                 k=case[2] + case[3], msg=f"{backend} {case} {layout} no bias")


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_portable_loop_under_a_forced_isa(isa):
    code = ("import torch\n"
            "from tests.ops.sft_modulation.test_sft_modulation import CASES, _data, _reference\n"
            "from sft_kernels import ops\n"
            "from sft_kernels.testing import assert_close, tol\n"
            f"assert torch.ops.sft_cpu.gemm_config().startswith('isa={isa}')\n"
            "for case in CASES:\n"
            "    x, ms, mt, convs = _data(case, sliced=True)\n"
            "    (ws, bs), (wt, bt) = convs\n"
            "    y = ops.sft_modulation(x, ms, ws, bs, mt, wt, bt, backend='cpu')\n"
            "    assert_close(y, _reference(x, ms, mt, convs), k=case[2] + case[3], msg=str(case))\n")
    proc = run_fresh(code, SFT_KERNELS_ISA=isa)
    if "not supported" in proc.stderr or "does not run" in proc.stderr:
        pytest.skip(f"this CPU cannot run {isa}")
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
def test_opcheck():
    x, ms, mt, ((ws, bs), (wt, bt)) = _data(CASES[1], sliced=True)
    torch.library.opcheck(torch.ops.sft.sft_modulation.default, (x, ms, ws, bs, mt, wt, bt, False, "cpu"))
    if bf16_available():
        torch.library.opcheck(torch.ops.sft.sft_modulation.default, (x, ms, ws, bs, mt, wt, bt, True, "cpu"))


def _bf16_definition(x, ms, mt, convs):
    """float64 of the bf16-rounded mid maps and weights, the biases and modulation unrounded."""
    (ws, bs), (wt, bt) = convs
    r = [t.to(torch.bfloat16).double() for t in (ms, ws, mt, wt)]
    return ref.sft_modulation(x.double(), r[0], r[1], bs.double(), r[2], r[3], bt.double())


@pytest.mark.skipif(not bf16_available(), reason="no AMX-BF16 here")
@pytest.mark.parametrize("case", CASES + [(3, 72, 40, 33, 7, 9)], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "sliced"])
def test_bf16_matches_its_definition(case, layout):
    """bf16=True on the cpu (AMX tiles) and on the reference backend against the definition: pixel blocks of 32 with
    tails, mid maps of 5-40 channels (one 32-channel chunk or two), panels with 16 or fewer outputs (half tiles)."""
    x, ms, mt, convs = _data(case, seed=3, sliced=layout == "sliced")
    (ws, bs), (wt, bt) = convs
    want = _bf16_definition(x, ms, mt, convs)
    for backend in ("cpu", "reference"):
        y = ops.sft_modulation(x, ms, ws, bs, mt, wt, bt, bf16=True, backend=backend)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert_close(y, want, k=case[2] + case[3], msg=f"{backend} {case} {layout}")
    far = _reference(x, ms, mt, convs)  # float32's answer: bf16 rounding apart, not equal
    assert 0 < (y.double() - far).abs().max().item() < 0.1


def test_bf16_bad_inputs():
    x, ms, mt, ((ws, bs), (wt, bt)) = _data(CASES[3])
    with pytest.raises(TypeError, match="bf16 must be a bool"):
        ops.sft_modulation(x, ms, ws, bs, mt, wt, bt, bf16=1)


def test_fused_sftnet_forward_matches_the_unfused_one(monkeypatch):
    """The converted SFTNet's fused forward with the op against the same forward handing the float maps to the
    readers (float rounding apart), and against eager PyTorch."""
    import sft_kernels
    from sft_kernels.models import fused, pretrained

    eager = pretrained.pretrained("teacher").eval()
    model = pretrained.pretrained("teacher").eval()
    sft_kernels.convert_(model)
    img = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        got, want_eager = model(img), eager(img)
        monkeypatch.setattr(fused, "modulated", lambda layer, cond, x, reader: (x, fused.modulation(layer, cond)))
        want = model(img)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert (got - want_eager).abs().max() <= 1e-4 * want_eager.abs().max()


def test_gradients_match_the_reference_and_the_eager_model():
    """The op's gradients (the reference definition's) for every input, and a converted SFTNet, whose fused forward
    runs the op, trains and back-propagates to its input as the eager model does."""
    import copy

    import sft_kernels
    from sft_kernels.models import SFTNet

    x, ms, mt, ((ws, bs), (wt, bt)) = _data(CASES[1], sliced=True)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, ms, ws, bs, mt, wt, bt)]
    twins = [t.detach().double().requires_grad_(True) for t in leaves]
    ops.sft_modulation(*leaves, backend=BACKENDS[-1]).square().sum().backward()
    ref.sft_modulation(*twins).square().sum().backward()
    for a, b in zip(leaves, twins):
        assert_close(a.grad, b.grad, k=64)

    torch.manual_seed(0)
    eager = SFTNet("pytorch", num_blocks=1, channels=16)
    model = copy.deepcopy(eager)
    sft_kernels.convert_(model)
    assert model.fused
    img = torch.rand(1, 3, 12, 12, requires_grad=True)
    img2 = img.detach().clone().requires_grad_(True)
    model(img).square().mean().backward()
    eager(img2).square().mean().backward()
    torch.testing.assert_close(img.grad, img2.grad, **tol("fp32_grad"))
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **tol("fp32_grad"), msg=name)


@pytest.mark.parametrize("change,match", [
    (dict(x=torch.zeros(1, 64, 16, 16, dtype=torch.int32)), "x must be a floating-point tensor"),
    (dict(mid_t=torch.zeros(1, 32, 8, 16)), "mid_t must have x's batch and spatial size"),
    (dict(w_s=torch.zeros(64, 32, 3, 3)), "must be 1×1"),
    (dict(w_t=torch.zeros(64, 16, 1, 1)), "must be 1×1 from 32"),
    (dict(b_s=torch.zeros(63)), "bias must have 64 elements"),
    (dict(mid_s=torch.zeros(1, 32, 16, 16, dtype=torch.float64)), "dtype"),
])
def test_bad_inputs_say_what_is_wrong(change, match):
    x, ms, mt, ((ws, bs), (wt, bt)) = _data(CASES[0])
    args = dict(x=x, mid_s=ms, w_s=ws, b_s=bs, mid_t=mt, w_t=wt, b_t=bt)
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.sft_modulation(*args.values())
