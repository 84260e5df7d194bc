"""The side-by-side timer every benchmark uses."""
import pytest
import torch

from sft_kernels.tools.benchmark import time_interleaved


def _record(shuffle):
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    times = time_interleaved(fns, repeat=12, warmup=1, shuffle=shuffle)
    assert set(times) == set("abcd") and all(t >= 0 for t in times.values())
    return calls[4:]  # after the warm-up round


def test_every_fn_runs_once_per_round_in_a_varying_order():
    calls = _record(shuffle=True)
    rounds = [tuple(calls[i:i + 4]) for i in range(0, len(calls), 4)]
    assert len(rounds) == 12 and all(sorted(r) == list("abcd") for r in rounds)
    assert len(set(rounds)) > 3  # not one fixed order
    predecessors = {(r[i - 1], r[i]) for r in rounds for i in range(1, 4)}
    assert any(p[1] == "b" and p[0] != "a" for p in predecessors)  # "b" does not always follow "a"
    assert _record(shuffle=True) == calls  # seeded: the same orders on every run


def test_fixed_order_when_asked():
    assert _record(shuffle=False) == list("abcd") * 12


def test_resnet50_catalog_matches_the_published_network():
    from sft_kernels.tools.shapes import resnet50_conv_shapes

    shapes = resnet50_conv_shapes()
    assert sum(s.count for s in shapes) == 53  # ResNet-50's conv layers, downsampling shortcuts included
    assert sum(s.count * s.flops // 2 for s in shapes) == 4_087_136_256  # its published 4.09 G conv MACs at 224²
    assert [s.pq for s in shapes if "s2" in s.name] == [(112, 112), (28, 28), (28, 28), (14, 14), (14, 14),
                                                        (7, 7), (7, 7)]


def test_qconv_candidates_agree_and_run():
    from sft_kernels import backends
    from sft_kernels.tools.bench_suite import qconv_candidates
    from sft_kernels.tools.shapes import ConvShape

    if not backends.supports("cpu", "qconv2d", "cpu", torch.uint8):
        pytest.skip("cpu backend not built")
    fns = qconv_candidates(ConvShape("t", 1, 16, 12, 10, 24, 3, 3, padding=1))  # checks ours vs torch.ao first
    assert {"sft int8", "sft int8 module", "sft fp32 direct", "sft fp32 best"} <= set(fns)
    for f in fns.values():
        assert f().shape[1] == 24
    # the module (QuantConv2d, its kernel call bound after the first) computes what the op does, every call
    assert torch.equal(fns["sft int8 module"](), fns["sft int8"]())
