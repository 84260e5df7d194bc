"""The measured backend choice: a CPU decision gets a second look in the caller's steady state."""
import time

import pytest
import torch

import sft_kernels
from sft_kernels.runtime import autotune
from tests.conftest import op_backends


def _sleeper(ms):
    def fn(x):
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            pass
        return x
    return fn


@pytest.mark.parametrize("a_ms, b_ms, kept", [(4.0, 1.0, "b"), (1.0, 0.99, "a"), (1.0, 3.0, "a")])
def test_second_look_switches_only_for_a_clear_gain(a_ms, b_ms, kept):
    settled, calls = [], []
    impls = {"a": _sleeper(a_ms), "b": _sleeper(b_ms)}

    def impl(name):
        calls.append(name)
        return impls[name]

    impls["b"] = lambda x, f=impls["b"]: f(-1)  # the other candidate's results are discarded
    look = autotune.SecondLook(("t", a_ms, b_ms), "a", ["a", "b"], impl, settled.append)
    try:
        for i in range(look.WARM + look.ROUNDS):
            assert look(i) == i  # every call returns the first winner's result
            assert settled == ([] if i < look.WARM + look.ROUNDS - 1 else [kept])
        assert autotune.choices()[("t", a_ms, b_ms)] == kept
        assert sorted(set(calls)) == ["a", "b"] and len(look.times["b"]) == look.ROUNDS
    finally:
        autotune.clear()


@pytest.mark.skipif(len(op_backends("conv2d")) < 2, reason="needs the cpu and reference backends")
def test_dispatch_settles_after_the_second_look():
    from sft_kernels.ops.conv2d import OP

    autotune.clear()
    try:
        x, w = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last), torch.randn(16, 8, 3, 3)
        expected = torch.nn.functional.conv2d(x, w, padding=1)
        with torch.no_grad():
            for _ in range(1 + autotune.SecondLook.WARM + autotune.SecondLook.ROUNDS):
                torch.testing.assert_close(sft_kernels.ops.conv2d(x, w, padding=1), expected)
            entries = list(OP.memo.values())
            assert entries and not any(isinstance(e[0], autotune.SecondLook) for e in entries)
            assert entries[0][2] == list(autotune.choices().values())[0]
    finally:
        autotune.clear()


def test_a_call_after_the_plan_runs_the_decision():
    """A caller that read the memo just before the decision was stored (another thread) runs the decided backend,
    not past the end of the plan."""
    impls = {"a": _sleeper(0.2), "b": _sleeper(0.1)}
    look = autotune.SecondLook(("late",), "a", ["a", "b"], lambda n: impls[n], lambda n: None)
    try:
        for i in range(look.WARM + look.ROUNDS + 3):
            assert look(i) == i
        assert autotune.choices()[("late",)] == "b" and len(look.times["b"]) == look.ROUNDS + 3
    finally:
        autotune.clear()
