"""sft.qsft_layer (a whole int8 SFT layer handing the conv after it a uint8 input): within one quantization step of
the float64 reference on every backend, and on the cpu byte for byte the three calls it replaces (the two first
convs with uint8 outputs, then sft.qsft_modulation), on shapes that take each path (whole work items of up to 224 pixels, pixel
and channel tails, first convs of other widths and maps padded to 4-channel groups, a batch, NCHW inputs, each
activation) under every int8 kernel this CPU runs; the fused int8 SFTNet forward unchanged by it; bad inputs."""
import pytest
import torch

from sft_kernels import ops
from sft_kernels.ops.qsft_layer import reference as ref
from tests.conftest import int8_kernels, op_backends, run_with_int8_kernel

BACKENDS = op_backends("qsft_layer", torch.float32)
CASES = [  # n, k (x's channels), c (cond's), cs, ct (the mid maps'), h, w
    (1, 64, 32, 32, 32, 16, 16),  # SFTNet's shape: whole work items, tiles and panels
    (2, 40, 20, 12, 20, 9, 11),  # a channel tail (40 = 32 + 8), pixel tails, unequal mid maps
    (1, 96, 13, 18, 7, 5, 3),  # cond and mid maps padded to whole 4-channel groups, fewer pixels than a tile
    (1, 16, 8, 40, 8, 4, 4),  # under one output panel (the buffered path only); a first conv of two panels
]
KW = dict(cond_input=(0.02, 3), s_input=(0.05, 7), t_input=(0.04, 12), out_scale=0.03, out_zero_point=100)


def _data(case, seed=0):
    n, k, c, cs, ct, h, w = case
    g = torch.Generator().manual_seed(seed)

    def conv(ko, ci, sc):
        return (torch.randint(-127, 128, (ko, ci, 1, 1), dtype=torch.int8, generator=g),
                torch.rand(ko, generator=g) * sc + sc / 4, torch.randn(ko, generator=g) * 0.1)

    x = torch.randn(n, k, h, w, generator=g)
    cond = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    return x, cond, [conv(cs, c, 0.0005), conv(k, cs, 0.002), conv(ct, c, 0.0005), conv(k, ct, 0.002)]


def _call(x, cond, convs, backend=None, act="leaky_relu", **kw):
    return ops.qsft_layer(x, cond, *convs, activation=act, negative_slope=0.1, backend=backend, **{**KW, **kw})


def _three_calls(x, cond, convs, act="leaky_relu", **kw):
    """What the fused forward ran before: the first convs requantized to uint8, then sft.qsft_modulation."""
    kw = {**KW, **kw}
    f_s, s_s, f_t, s_t = convs
    mids = [ops.qconv2d(cond, *f, input_scale=kw["cond_input"][0], input_zero_point=kw["cond_input"][1],
                        activation=act, negative_slope=0.1, out_scale=q[0], out_zero_point=q[1], backend="cpu")
            for f, q in ((f_s, kw["s_input"]), (f_t, kw["t_input"]))]
    return ops.qsft_modulation(x, mids[0], *s_s, mids[1], *s_t, s_input=kw["s_input"], t_input=kw["t_input"],
                               out_scale=kw["out_scale"], out_zero_point=kw["out_zero_point"], backend="cpu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_matches_reference_within_one_step(backend, case, layout):
    x, cond, convs = _data(case)
    if layout == "channels_last":
        x, cond = (t.contiguous(memory_format=torch.channels_last) for t in (x, cond))
    y = _call(x, cond, convs, backend)
    f_s, s_s, f_t, s_t = convs
    e = ref.qsft_layer(x, cond, KW["cond_input"], f_s, f_t, s_s, s_t, KW["s_input"], KW["t_input"], "leaky_relu",
                       0.1, KW["out_scale"], KW["out_zero_point"])
    assert y.dtype == torch.uint8 and y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
    diff = (y.int() - e.int()).abs()
    assert diff.max() <= 1, diff.max()
    assert (diff > 0).float().mean() < 0.01  # float rounding (a fused multiply-add) moves only ties


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("act", [None, "relu", "leaky_relu", "relu6", "silu", "gelu"])
def test_cpu_bytes_equal_the_three_calls(case, act):
    x, cond, convs = _data(case, seed=3)
    for kw in (dict(), dict(out_scale=0.002, out_zero_point=0), dict(s_input=(0.5, 250), t_input=(0.001, 0))):
        assert torch.equal(_call(x, cond, convs, "cpu", act, **kw), _three_calls(x, cond, convs, act, **kw)), kw


def test_a_larger_map_across_work_items():
    """128×96 pixels: many work items per thread, at one and two threads."""
    if "cpu" not in BACKENDS:
        pytest.skip("the cpu extension did not build")
    x, cond, convs = _data((1, 64, 32, 32, 32, 96, 128), seed=4)
    want = _three_calls(x, cond, convs)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            assert torch.equal(_call(x, cond, convs, "cpu"), want), t
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kernel", int8_kernels())
def test_every_int8_kernel_gives_the_three_calls_bytes(kernel):
    """The first convs' tiles and the modulation's of each ISA (forced in a fresh process) on every case."""
    code = ("import torch\n"
            "from tests.ops.qsft_layer.test_qsft_layer import CASES, _data, _call, _three_calls\n"
            "from sft_kernels.ops.qconv2d import cpu\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "for case in CASES:\n"
            "    x, cond, convs = _data(case, seed=5)\n"
            "    assert torch.equal(_call(x, cond, convs, 'cpu'), _three_calls(x, cond, convs)), case\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
def test_opcheck():
    x, cond, convs = _data(CASES[1])
    flat = [t for conv in convs for t in conv]
    torch.library.opcheck(torch.ops.sft.qsft_layer.default,
                          (x, cond, *flat, 0.02, 3, 0.05, 7, 0.04, 12, "leaky_relu", 0.1, 0.03, 100, "cpu"))


def test_int8_sftnet_forward_is_unchanged_by_it(monkeypatch):
    """The fused int8 SFTNet forward (ops.qsft_layer per SFT layer) against the same forward with the first convs
    run as their own calls."""
    from sft_kernels.models import fused, pretrained

    model = pretrained.pretrained("teacher-int8").eval()
    img = torch.rand(1, 3, 19, 23)
    calls, layer_op = [], ops.qsft_layer
    with torch.no_grad():
        monkeypatch.setattr(fused.ops, "qsft_layer", lambda *a, **k: calls.append(1) or layer_op(*a, **k))
        got = model(img)
        monkeypatch.undo()
        monkeypatch.setattr(fused, "_same_input", lambda a, b: False)
        want = model(img)
    assert len(calls) == 2 * model.num_blocks + 1  # every SFT layer took the one-op path
    assert torch.equal(got, want)


@pytest.mark.parametrize("change,match", [
    (dict(x=torch.zeros(1, 64, 16, 16, dtype=torch.float64)), "x must have dtype"),
    (dict(cond=torch.zeros(1, 32, 16, 16)), "cond must have dtype"),
    (dict(cond=torch.zeros(1, 32, 8, 16, dtype=torch.uint8)), "cond must have x's batch and spatial size"),
    (dict(first_s=(torch.zeros(32, 32, 3, 3, dtype=torch.int8), torch.ones(32), None)), "must be a 1×1 conv"),
    (dict(second_t=(torch.zeros(64, 16, 1, 1, dtype=torch.int8), torch.ones(64), None)), "from 32 to 64 channels"),
    (dict(first_t=(torch.zeros(32, 32, 1, 1, dtype=torch.int8), torch.zeros(32), None)), "positive per-channel"),
    (dict(second_s=(torch.zeros(64, 32, 1, 1, dtype=torch.int8), torch.ones(64), torch.zeros(63))),
     "bias must have 64 elements"),
    (dict(first_s=torch.zeros(32, 32, 1, 1, dtype=torch.int8)), "first_s must be a \\(int8 weight"),
    (dict(cond_input=(0.0, 3)), "cond_input scale must be a positive number"),
    (dict(t_input=(0.04, 300)), r"zero point must be an int in \[0, 255\]"),
    (dict(s_input=0.05), "s_input must be a \\(scale, zero_point\\) tuple"),
    (dict(activation="mish"), "activation must be one of"),
    (dict(out_zero_point=-1), r"zero point must be an int in \[0, 255\]"),
])
def test_bad_inputs_say_what_is_wrong(change, match):
    x, cond, (f_s, s_s, f_t, s_t) = _data(CASES[0])
    args = dict(x=x, cond=cond, first_s=f_s, second_s=s_s, first_t=f_t, second_t=s_t, **KW, activation="leaky_relu")
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=match):
        ops.qsft_layer(**args)
