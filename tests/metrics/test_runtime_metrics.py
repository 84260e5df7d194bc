"""Run-time metrics: latency, peak memory, energy (never estimated), per-layer time."""
import math
import time

import pytest
import torch
import torch.nn as nn

import sft_kernels
from sft_kernels.metrics import LayerTime, energy, latency, layer_times, peak_memory
from sft_kernels.metrics import runtime
from sft_kernels.models import SFTNet
from sft_kernels.transforms import caller_layout


# ---------------------------------------------------------------- latency
def test_latency_is_sane_and_counts_calls():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    r = latency(fn, warmup=3, repeat=5)
    assert len(calls) == 8  # warm-up calls are made but not timed
    assert r["repeat"] == 5 and r["warmup"] == 3
    assert 0.002 <= r["p10_s"] <= r["median_s"] <= r["p90_s"] < 1.0
    assert r["device"] == "cpu"


def test_latency_records_threads():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert latency(lambda: torch.randn(64, 64) @ torch.randn(64, 64), repeat=2)["threads"] == 1
    finally:
        torch.set_num_threads(old)
    assert latency(lambda: None, warmup=0, repeat=1)["threads"] == old


@pytest.mark.parametrize("kw", [dict(repeat=0), dict(repeat=1.5), dict(warmup=-1)])
def test_latency_bad_arguments(kw):
    with pytest.raises(ValueError):
        latency(lambda: None, **kw)


# ---------------------------------------------------------------- peak memory
def test_peak_memory_cpu_counts_live_tensors():
    def fn():
        a = torch.ones(1000, 1000)  # 4 MB
        b = a * 2  # 8 MB live here
        del a
        c = b + 1  # still 8 MB live
        return c.sum().item()

    r = peak_memory(fn)
    assert r["how"].startswith("cpu:")
    assert 8_000_000 <= r["bytes"] < 8_100_000, r


def test_peak_memory_counts_outputs_of_the_extension_pool():
    """The cpu backend's outputs of 1 MiB or more come from its own buffer pool, which PyTorch's allocator
    never sees: peak_memory switches the pool off for the call, and restores it after."""
    from sft_kernels import backends
    from sft_kernels.ops import matmul

    if not backends.status()["cpu"][0]:
        pytest.skip("cpu backend not built")
    a, b = torch.randn(1024, 64), torch.randn(64, 1024)  # output 4 MiB
    matmul(a, b, backend="cpu")  # leaves a 4 MiB block idle in the pool
    cap = torch.ops.sft_cpu.buffer_pool_set_capacity_mb(-1)
    r = peak_memory(lambda: matmul(a, b, backend="cpu"))
    assert r["bytes"] >= 4 * 2**20, r
    assert torch.ops.sft_cpu.buffer_pool_set_capacity_mb(-1) == cap


def test_peak_memory_excludes_what_exists_before_the_call():
    big = torch.ones(2000, 2000)  # 16 MB allocated before: not counted
    r = peak_memory(lambda: big.sum())
    assert r["bytes"] is not None and r["bytes"] < 1_000_000


# ---------------------------------------------------------------- energy
def test_energy_is_measured_or_explicitly_unavailable():
    calls = []
    r = energy(lambda: calls.append(1), device="cpu")
    if r["joules"] is None:
        assert r["how"].startswith("unavailable: ") and len(r["how"]) > len("unavailable: ") + 10
        assert not calls  # nothing run, nothing estimated
    else:
        assert r["how"].startswith("rapl") and r["joules"] >= 0 and r["calls"] == len(calls) >= 1


def _fake_rapl(root, domains):
    """domains: {dirname: (name, energy_uj, max_range_uj)}"""
    for d, (name, e, rng) in domains.items():
        p = root / d
        p.mkdir(parents=True)
        (p / "name").write_text(name + "\n")
        (p / "energy_uj").write_text(f"{e}\n")
        (p / "max_energy_range_uj").write_text(f"{rng}\n")


def test_energy_rapl_sums_packages_and_handles_wraparound(tmp_path, monkeypatch):
    rng = 262_143_328_850
    _fake_rapl(tmp_path, {"intel-rapl:0": ("package-0", rng - 1_000_000, rng),
                          "intel-rapl:0:0": ("core", 5, rng),  # a subdomain: never counted
                          "intel-rapl:1": ("package-1", 0, rng),
                          "intel-rapl:2": ("psys", 0, rng)})  # not a package domain
    monkeypatch.setattr(runtime, "RAPL_ROOT", str(tmp_path))

    def fn():  # package 0 wraps around (+1.5 J), package 1 counts +2 J, the others move too
        (tmp_path / "intel-rapl:0" / "energy_uj").write_text("500000\n")
        (tmp_path / "intel-rapl:1" / "energy_uj").write_text("2000000\n")
        (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("999999999\n")
        (tmp_path / "intel-rapl:2" / "energy_uj").write_text("999999999\n")

    r = energy(fn, repeat=1, device="cpu")
    assert r["how"].startswith("rapl: sum of 2 package domain(s)")
    assert r["calls"] == 1 and math.isclose(r["joules"], 3.5)


def test_energy_without_counters_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "RAPL_ROOT", str(tmp_path / "nothing"))
    r = energy(lambda: pytest.fail("must not run fn without a counter"), device="cpu")
    assert r["joules"] is None and r["how"].startswith("unavailable: ") and "RAPL" in r["how"]


# ---------------------------------------------------------------- layer times
def _convs(model):
    return {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("backend", [None, "reference"])
def test_layer_times_cover_every_leaf_conv(backend):
    model = SFTNet(num_blocks=1, channels=8).reset_parameters_(0).eval()
    if backend:
        sft_kernels.convert_(model, backend=backend)
    x = torch.rand(1, 3, 8, 8)
    lt = layer_times(model, x, repeat=2)
    assert all(isinstance(t, LayerTime) and t.seconds > 0 for t in lt)
    names = [t.name for t in lt]
    assert len(names) == len(set(names))
    assert _convs(model) <= set(names)
    assert {t.type for t in lt if t.name in _convs(model)} == {"Conv2d"}
    leaves = {n for n, m in model.named_modules() if not list(m.children())}
    assert set(names) <= leaves  # only leaf modules, and PixelShuffle / ReLU leaves are there too
    assert {"HR_branch.1", "HR_branch.2"} <= set(names)
    # hooks are removed afterwards (convert_'s own, which hand the output back in the caller's layout, stay)
    ours = (caller_layout.CallerLayout, caller_layout.BackToCaller)
    assert not any(not isinstance(h, ours) for m in model.modules()
                   for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values()))


def test_layer_times_sums_repeated_calls_and_keeps_call_order():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Conv2d(3, 3, 1)
            self.a = nn.Conv2d(3, 3, 1)
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.a(self.b(self.b(x)))

    lt = layer_times(Twice(), torch.rand(1, 3, 4, 4), repeat=1)
    assert [t.name for t in lt] == ["b", "a"]  # first-call order; never-called modules left out
