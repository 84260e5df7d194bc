"""sft.qsft_modulation (an int8 SFT layer handing the conv after it a uint8 input): within one quantization step of
the float64 reference on every backend, and on the cpu byte for byte the unfused sequence it replaces (two int8
1×1 convs with float outputs, then sft.qconv2d quantizing x·(scale + 1) + shift as its input), on odd shapes that
take each of its paths (whole 7-pixel tiles and 32-channel panels, pixel and channel tails, channel-padded maps,
batches, NCHW inputs) under every int8 kernel this CPU runs; the fused SFTNet forward unchanged by it; bad inputs."""
import pytest
import torch

from sft_kernels import ops
from sft_kernels.ops.qsft_modulation import reference as ref
from tests.conftest import int8_kernels, op_backends, run_with_int8_kernel

BACKENDS = op_backends("qsft_modulation", torch.float32)
CASES = [  # n, k (x's channels), cs, ct (the maps' channels), h, w
    (1, 64, 32, 32, 16, 16),  # SFTNet's shape: whole tiles and panels only
    (2, 40, 12, 20, 9, 11),  # a channel tail (40 = 32 + 8), a pixel tail (198 = 28·7 + 2), unequal maps
    (1, 96, 18, 7, 5, 3),  # maps padded to whole 4-channel groups (18 -> 20, 7 -> 8), fewer pixels than a tile
    (1, 16, 8, 8, 4, 4),  # under one panel: the buffered path only
]


def _data(case, seed=0):
    n, k, cs, ct, h, w = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, h, w, generator=g)
    maps = [torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g) for c in (cs, ct)]
    convs = [(torch.randint(-127, 128, (k, c, 1, 1), dtype=torch.int8, generator=g),
              torch.rand(k, generator=g) * 0.002 + 0.0005, torch.randn(k, generator=g) * 0.1) for c in (cs, ct)]
    return x, maps, convs


def _call(x, maps, convs, backend=None, out=(0.03, 100)):
    (ms, mt), ((ws, ss, bs), (wt, st, bt)) = maps, convs
    return ops.qsft_modulation(x, ms, ws, ss, bs, mt, wt, st, bt, s_input=(0.05, 7), t_input=(0.04, 12),
                               out_scale=out[0], out_zero_point=out[1], backend=backend)


def _unfused(x, maps, convs, out=(0.03, 100)):
    """What the fused forward did before: float scale and shift maps, quantized with the modulation by the reader."""
    (ms, mt), ((ws, ss, bs), (wt, st, bt)) = maps, convs
    scale = ops.qconv2d(ms, ws, ss, bs, input_scale=0.05, input_zero_point=7, backend="cpu")
    shift = ops.qconv2d(mt, wt, st, bt, input_scale=0.04, input_zero_point=12, backend="cpu")
    # a 1×1 identity int8 conv reading the modulated input returns its quantized bytes (scale 1, zero point 0)
    k = x.shape[1]
    eye = torch.eye(k, dtype=torch.int8).view(k, k, 1, 1)
    y = ops.qconv2d(x, eye, torch.ones(k), None, input_scale=out[0], input_zero_point=out[1],
                    modulation=(scale, shift), out_scale=out[0], out_zero_point=out[1], backend="cpu")
    return y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_matches_reference_within_one_step(backend, case, layout):
    x, maps, convs = _data(case)
    if layout == "channels_last":
        x, maps = x.contiguous(memory_format=torch.channels_last), [
            m.contiguous(memory_format=torch.channels_last) for m in maps]
    y = _call(x, maps, convs, backend)
    (ms, mt), ((ws, ss, bs), (wt, st, bt)) = maps, convs
    e = ref.qsft_modulation(x, ms, 0.05, 7, ws, ss, bs, mt, 0.04, 12, wt, st, bt, 0.03, 100)
    assert y.dtype == torch.uint8 and y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
    diff = (y.int() - e.int()).abs()
    assert diff.max() <= 1, diff.max()
    assert (diff > 0).float().mean() < 0.01  # float rounding (a fused multiply-add) moves only ties


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_cpu_bytes_equal_the_unfused_sequence(case):
    x, maps, convs = _data(case, seed=3)
    x = x.contiguous(memory_format=torch.channels_last)
    for out in ((0.03, 100), (0.002, 0), (5.0, 255)):  # saturation at both ends too
        assert torch.equal(_call(x, maps, convs, "cpu", out), _unfused(x, maps, convs, out)), out


@pytest.mark.parametrize("kernel", int8_kernels())
def test_every_int8_kernel_gives_the_unfused_bytes(kernel):
    """The VNNI pair tile and the buffered tiles of each ISA (forced in a fresh process) on every case."""
    code = ("import torch\n"
            "from tests.ops.qsft_modulation.test_qsft_modulation import CASES, _data, _call, _unfused\n"
            "from sft_kernels.ops.qconv2d import cpu\n"
            f"assert cpu.kernel() == {kernel!r}, cpu.kernel()\n"
            "for case in CASES:\n"
            "    x, maps, convs = _data(case, seed=5)\n"
            "    assert torch.equal(_call(x, maps, convs, 'cpu'), _unfused(x, maps, convs)), case\n")
    run_with_int8_kernel(kernel, code)


@pytest.mark.skipif("cpu" not in BACKENDS, reason="the cpu extension did not build")
def test_opcheck():
    x, maps, convs = _data(CASES[1])
    (ms, mt), ((ws, ss, bs), (wt, st, bt)) = maps, convs
    torch.library.opcheck(torch.ops.sft.qsft_modulation.default,
                          (x, ms, ws, ss, bs, mt, wt, st, bt, 0.05, 7, 0.04, 12, 0.03, 100, "cpu"))


def test_int8_sftnet_forward_is_unchanged_by_it(monkeypatch):
    """The fused int8 SFTNet forward with the op against the same forward with float maps handed to the readers."""
    from sft_kernels.models import fused, pretrained

    model = pretrained.pretrained("teacher-int8").eval()
    img = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        got = model(img)
        monkeypatch.setattr(fused, "modulated", lambda layer, cond, x, reader: (x, fused.modulation(layer, cond)))
        want = model(img)
    assert torch.equal(got, want)


@pytest.mark.parametrize("change,match", [
    (dict(x=torch.zeros(1, 64, 16, 16, dtype=torch.float64)), "x must have dtype"),
    (dict(mid_s=torch.zeros(1, 32, 16, 16)), "mid_s must have dtype"),
    (dict(mid_t=torch.zeros(1, 32, 8, 16, dtype=torch.uint8)), "mid_t must have x's batch and spatial size"),
    (dict(w_s=torch.zeros(64, 32, 3, 3, dtype=torch.int8)), "must be 1×1"),
    (dict(ws_t=torch.zeros(64)), "positive per-channel scales"),
    (dict(b_s=torch.zeros(63)), "bias must have 64 elements"),
    (dict(s_input=(0.0, 7)), "input scale must be a positive number"),
    (dict(t_input=(0.04, 300)), r"zero point must be an int in \[0, 255\]"),
    (dict(out_zero_point=-1), r"zero point must be an int in \[0, 255\]"),
    (dict(s_input=0.05), "must be \\(scale, zero_point\\) tuples"),
])
def test_bad_inputs_say_what_is_wrong(change, match):
    x, (ms, mt), ((ws, ss, bs), (wt, st, bt)) = _data(CASES[0])
    args = dict(x=x, mid_s=ms, w_s=ws, ws_s=ss, b_s=bs, mid_t=mt, w_t=wt, ws_t=st, b_t=bt, s_input=(0.05, 7),
                t_input=(0.04, 12), out_scale=0.03, out_zero_point=100)
    args.update(change)
    kw = {k: args.pop(k) for k in ("s_input", "t_input", "out_scale", "out_zero_point")}
    with pytest.raises((ValueError, TypeError), match=match):
        ops.qsft_modulation(*args.values(), **kw)
