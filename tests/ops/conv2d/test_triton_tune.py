"""`sft-kernels tune`: sweeps configs (through the interpreter here), caches the winner, reuses it."""
import json
import re

import pytest
import torch

from sft_kernels import backends
from sft_kernels.tools import cli
from sft_kernels.testing import tol


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    from sft_kernels.runtime import triton as sft_triton

    if not sft_triton.status()[0]:
        pytest.skip("triton unavailable")
    monkeypatch.setenv("SFT_KERNELS_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_tune_end_to_end_then_cached(cache_dir, capsys):
    argv = ["tune", "--shape", "1,8,6,6,16", "--dtype", "float32", "--repeat", "1"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "tuned, saved to" in first and "<- best" in first
    files = list(cache_dir.glob("triton_conv2d_*.json"))
    assert len(files) == 1
    entry = next(iter(json.loads(files[0].read_text()).values()))
    assert entry["config"] in {name for name, _ in entry["results"]}
    assert cli.main(argv) == 0
    assert "cached result" in capsys.readouterr().out


def test_tuned_config_is_used_and_logged(cache_dir, monkeypatch, capsys):
    from sft_kernels.ops.conv2d import triton_tune as tune
    from sft_kernels.runtime.triton import load

    out = tune.tune_conv2d(1, 8, 6, 6, 16, padding=1, configs=["interpret_small"], repeat=1)
    assert out["config"] == "interpret_small" and not out["cached"]
    monkeypatch.setenv("SFT_KERNELS_LOG_CONFIG", "1")
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3)
    y = load("sft_kernels.ops.conv2d.triton").conv2d(x, w, None, 1, 1)
    err = capsys.readouterr().err
    assert "BLOCK_M=64, BLOCK_N=32, BLOCK_K=32" in err  # interpret_small, from the cache
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, padding=1), **tol("fp32"))
    monkeypatch.setenv("SFT_KERNELS_TRITON_CONFIG", "interpret")
    load("sft_kernels.ops.conv2d.triton").conv2d(x, w, None, 1, 1)
    assert "BLOCK_M=128" in capsys.readouterr().err  # pinned by the environment


def test_tune_bad_arguments(cache_dir, capsys):
    assert cli.main(["tune", "--shape", "1,2,3"]) == 1
    assert "--shape must be" in capsys.readouterr().err
    assert cli.main(["tune", "--shape", "1,8,6,6,16", "--configs", "nope", "--dtype", "float32"]) == 1
    assert "unknown config" in capsys.readouterr().err


@pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
def test_tune_gemm_blocking_sweep(capsys):
    """`tune --op gemm` times the cpu GEMM under each MC,KC,NC candidate next to torch.matmul, names the
    fastest as an SFT_KERNELS_GEMM_BLOCKING setting, and leaves the engine's blocking as it found it."""
    from sft_kernels.tools.cpu_tune import DEFAULT_CANDIDATES, current_blocking, sweep_gemm_blocking

    before = current_blocking()
    assert cli.main(["tune", "--op", "gemm", "--shape", "40,48,24", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "<- best" in out and "SFT_KERNELS_GEMM_BLOCKING=" in out and "(in force)" in out
    assert len(re.findall(r"^\d+,\d+,\d+ ", out, re.M)) == len(DEFAULT_CANDIDATES)  # one row per candidate
    assert current_blocking() == before
    res = sweep_gemm_blocking(30, 20, 16, candidates=[(14, 8, 32), (28, 16, 64)], repeat=2, min_time=0.0)
    assert [r["ms"] for r in res["rows"]] == sorted(r["ms"] for r in res["rows"])
    assert {tuple(r["blocking"]) for r in res["rows"]} == {(14, 8, 32), (28, 16, 64)}
    assert current_blocking() == before
    assert cli.main(["tune", "--op", "gemm", "--shape", "4,4"]) == 1
    assert "M,N,K" in capsys.readouterr().err
    with pytest.raises(ValueError, match="three positive ints"):
        sweep_gemm_blocking(8, 8, 8, candidates=[(14, 8)])
