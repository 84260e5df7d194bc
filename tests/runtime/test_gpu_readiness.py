"""CPU-side checks of what the GPU path relies on: autotune times CUDA candidates on the GPU's clock (not by
launch overhead) and never inside a graph capture; packed weights live exactly as long as their weight and are
packed inside a capture, so a CUDA graph replay never reads a freed or stale pack."""
import gc
import time
import weakref

import pytest
import torch

from sft_kernels.ops.conv2d import cuda as cuda_conv
from sft_kernels.runtime import autotune, weight_pack


class _FakeGPU:
    """torch.cuda's timing surface with a scripted device clock: run(c) advances it by the candidate's cost."""

    def __init__(self):
        self.clock = 0.0
        self.syncs = 0

    def event_class(self):
        gpu = self

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                self.t = gpu.clock

            def synchronize(self):
                gpu.syncs += 1

            def elapsed_time(self, other):
                return (other.t - self.t) * 1e3

        return Event


def test_autotune_times_cuda_candidates_on_the_device_clock(monkeypatch):
    gpu = _FakeGPU()
    monkeypatch.setattr(torch.cuda, "Event", gpu.event_class())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    device_cost = {"launches_fast": 5e-3, "runs_fast": 1e-3}  # GPU seconds
    host_cost = {"launches_fast": 0.0, "runs_fast": 3e-3}  # host seconds to launch (what perf_counter sees)

    def run(c):
        time.sleep(host_cost[c])
        gpu.clock += device_cost[c]

    autotune.clear()
    try:
        best = autotune.pick(("readiness", 1), ["launches_fast", "runs_fast"], run, device=torch.device("cuda"))
        assert best == "runs_fast"
        assert gpu.syncs > 0
        # the same scripted costs on the host clock pick the other one: the device decides the timer
        assert autotune.pick(("readiness", 2), ["launches_fast", "runs_fast"], run) == "launches_fast"
    finally:
        autotune.clear()


def test_autotune_does_not_time_or_cache_during_a_capture(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    calls = []
    autotune.clear()
    try:
        got = autotune.pick(("readiness", 3), ["first", "second"], calls.append, device=torch.device("cuda"))
        assert got == "first" and calls == [] and autotune.choices() == {}
    finally:
        autotune.clear()


def test_autotune_skips_a_candidate_that_cannot_run_the_call():
    """A backend that raises on this call (the reference conv asked for algorithm="winograd") is left out of the
    timing instead of failing the call; if none can run it, the first error is raised."""
    def run(c):
        if c == "reference":
            raise NotImplementedError("no Winograd conv here")

    autotune.clear()
    try:
        assert autotune.pick(("skip", 1), ["reference", "cpu"], run) == "cpu"
        with pytest.raises(NotImplementedError, match="no Winograd"):
            autotune.pick(("skip", 2), ["reference"] * 2, run)
    finally:
        autotune.clear()


def _pack(w):
    return w.permute(0, 2, 3, 1).contiguous()


def test_pack_lives_as_long_as_its_weight_and_is_never_evicted():
    w = torch.randn(8, 4, 3, 3)
    first = weight_pack.packed(w, "t", _pack)
    for _ in range(600):  # far past any size bound: other weights (e.g. SFT layers' per-forward concatenations)
        weight_pack.packed(torch.randn(8, 4, 3, 3), "t", _pack)
    assert weight_pack.packed(w, "t", _pack) is first
    assert weight_pack.cached(w)["t"] is first
    alive = weakref.ref(first)
    del first, w
    gc.collect()
    assert alive() is None  # the pack died with its weight
    assert len(weight_pack._PACKS) < 10  # and the temporaries' entries died with them


def test_pack_follows_in_place_changes_data_swaps_and_casts():
    w = torch.nn.Parameter(torch.randn(8, 4, 3, 3))
    p0 = weight_pack.packed(w, "t", _pack)
    with torch.no_grad():
        w.mul_(2)
    p1 = weight_pack.packed(w, "t", _pack)
    assert p1 is not p0 and torch.equal(p1, 2 * p0)
    w.data = torch.randn(8, 4, 3, 3)  # same Parameter object, new memory
    p2 = weight_pack.packed(w, "t", _pack)
    assert torch.equal(p2, _pack(w.detach()))
    w.data = w.data.double()
    assert weight_pack.packed(w, "t", _pack).dtype == torch.float64


def test_pack_is_rebuilt_inside_a_capture_and_not_stored(monkeypatch):
    w = torch.randn(8, 4, 3, 3)
    monkeypatch.setattr(weight_pack, "capturing", lambda: True)
    a, b = weight_pack.packed(w, "t", _pack), weight_pack.packed(w, "t", _pack)
    assert a is not b and torch.equal(a, b)
    assert weight_pack.cached(w) == {}


def test_a_capture_inside_hold_for_graph_reuses_and_holds_the_cached_pack(monkeypatch):
    w = torch.randn(8, 4, 3, 3)
    cached = weight_pack.packed(w, "t", _pack)  # the warm-up before a capture
    monkeypatch.setattr(weight_pack, "capturing", lambda: True)
    with weight_pack.hold_for_graph() as held:
        assert weight_pack.packed(w, "t", _pack) is cached
        fresh = torch.randn(8, 4, 3, 3)  # computed inside the graph: packed there, not stored
        assert weight_pack.packed(fresh, "t", _pack) is not weight_pack.packed(fresh, "t", _pack)
    assert held == [cached] and weight_pack.cached(fresh) == {}
    alive = weakref.ref(cached)
    del cached, w
    gc.collect()
    assert alive() is not None  # the graph's list keeps the address it baked in valid
    del held
    gc.collect()
    assert alive() is None


def test_a_view_of_the_weight_is_not_stored():
    w = torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last)  # already KRSC in memory
    p = weight_pack.packed(w, "t", _pack)
    assert p.data_ptr() == w.data_ptr() and weight_pack.cached(w) == {}


def test_cuda_layer_packs_through_weight_pack():
    from tests.ops.conv2d.test_cuda import emulate_kernel

    x, wt = torch.randn(1, 3, 6, 6), torch.randn(8, 3, 3, 3)
    cuda_conv.conv2d(x, wt, None, (1, 1), (1, 1), (1, 1), 1, None, 0.01, None, kernel=emulate_kernel)
    packs = weight_pack.cached(wt)
    assert list(packs) == ["cuda_krsc_8"] and packs["cuda_krsc_8"].shape == (8, 3, 3, 8)


def test_triton_layer_packs_rsck_once():
    from sft_kernels import backends
    from sft_kernels.ops import conv2d

    if not backends.supports("triton", "conv2d", "cpu", torch.float32):
        pytest.skip("Triton backend unavailable")
    x, wt = torch.randn(1, 4, 5, 5), torch.randn(8, 4, 3, 3)
    y = conv2d(x, wt, padding=1, backend="triton")
    packed = weight_pack.cached(wt)["triton_rsck"]
    assert packed.shape == wt.shape and packed.stride() == (1, 8, 96, 32)  # [R, S, C, K] memory, K fastest
    assert conv2d(x, wt, padding=1, backend="triton") is not y
    assert weight_pack.cached(wt)["triton_rsck"] is packed
