"""The `sft-kernels` command: --help everywhere, info, a small demo and a quick bench run."""
import json

import pytest

from sft_kernels import backends
from sft_kernels.tools import cli


@pytest.mark.parametrize("argv", [["--help"], ["info", "--help"], ["demo", "--help"], ["bench", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    assert "usage: sft-kernels" in capsys.readouterr().out


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "cpu", "triton", "cuda"):
        assert name in out
    if backends.cpu_ext() is not None:  # which unit runs bf16 convs, as backends.bf16_unit() says
        unit = backends.bf16_unit()
        assert "bf16 convs: " + {"amx": "AMX", "vectors": "AVX512-BF16", "none": "none"}[unit] in out


def test_demo_small(tmp_path, capsys):
    assert cli.main(["demo", "--lr-size", "16", "--crop", "8", "--repeat", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "eager PyTorch" in out and "NO" not in out.split("agrees")[1]
    if backends.cpu_ext() is not None:  # the shipped int8 model runs beside the converted ones
        assert "int8 (teacher-int8, cpu)" in out and "dB from eager's output" in out
    if backends.bf16_available():  # and the bf16 model on AMX CPUs
        assert ("cpu bf16 (AMX)" in out or "cpu bf16 (AVX512-BF16)" in out) and "fp32_precision" in out
    for name in ("hr.png", "sr_eager_PyTorch.png", "side_by_side.png"):
        assert (tmp_path / name).exists(), name


def test_bench_quick_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    assert cli.main(["bench", "--quick", "--op", "matmul", "--repeat", "2", "-o", str(js), "--plot", str(png)]) == 0
    result = json.loads(js.read_text())
    rows = result["rows"]
    assert {r["impl"] for r in rows} >= {"torch"}
    assert all(r["gflops"] > 0 for r in rows)
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "vs best torch" in out
    ceiling = result["meta"]["ukernel_ceiling_gflops"]
    if backends.cpu_ext() is None:
        assert ceiling is None
    else:  # the micro-kernel's own rate is reported next to the FMA peak
        assert ceiling > 0 and f"{ceiling:.0f} GFLOP/s" in out


def test_bad_image_is_one_clear_error(capsys):
    assert cli.main(["demo", "--image", "/nonexistent.png", "--lr-size", "8"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sft-kernels demo: error:") and "Traceback" not in err


@pytest.mark.skipif(backends.cpu_ext() is None, reason="cpu backend not built")
def test_bench_sparse_quick_writes_json_and_crossover_plot(tmp_path, capsys):
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    assert cli.main(["bench", "--sparse", "--quick", "--repeat", "2", "-o", str(js), "--plot", str(png)]) == 0
    rows = json.loads(js.read_text())["rows"]
    impls = {r["impl"] for r in rows}
    assert {"dense direct", "dense winograd", "unstructured 90%", "block 50%"} <= impls
    assert all(r["ms"] > 0 and r["vs_direct"] > 0 for r in rows)
    assert png.stat().st_size > 1000
    assert "vs dense best" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
    (["quantize", "--crops", "0", "-o", "x"], "argument --crops: must be >= 1, got 0"),
    (["bench", "--quick", "-o", "/nonexistent-folder/x.json"], "does not exist: create it first"),
])
def test_bad_counts_and_output_folders_fail_before_any_work(argv, message, capsys):
    """Checked up front (a zero --repeat had run the peak measurement and then failed on an empty median; a missing
    output folder failed after the whole benchmark)."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2 and message in capsys.readouterr().err
