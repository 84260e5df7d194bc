"""`sft-kernels report` / sft_kernels.tools.report.build_report, end to end on a tiny model."""
import json
import math
import os

import pytest
import torch

from sft_kernels import backends
from sft_kernels.tools import cli
from sft_kernels.train import export as weights
from sft_kernels.models import pretrained as shipped_weights
from sft_kernels.metrics import conv_macs, count_params
from sft_kernels.models import SFTNet
from sft_kernels.tools.report import build_report, default_backends, load_model

ARCH = {"variant": "pytorch", "num_blocks": 1, "channels": 8}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Shipped weights 'tiny' (trained weights are not shipped yet, so tests make their own)."""
    wdir = tmp_path / "weights"
    path = weights.export(SFTNet(num_blocks=1, channels=8).reset_parameters_(0), "tiny",
                          {"architecture": ARCH}, directory=wdir)
    monkeypatch.setattr(shipped_weights, "WEIGHTS_DIR", wdir)
    return path


def test_default_backends():
    names = default_backends()
    assert names[0] == "eager" and "reference" in names
    if not torch.cuda.is_available():
        assert "triton" not in names  # the interpreter is far too slow for a report
        assert set(names) == {"eager"} | (set(backends.available()) - {"triton"})


def test_report_end_to_end(tiny, tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "out"
    r = build_report(models=("tiny", "bicubic"), out_dir=str(out), lr_size=16, threads=1, repeat=1)
    assert torch.get_num_threads() == threads  # restored
    for f in ("report.md", "report.json", "psnr_vs_latency.png", "layer_times_tiny.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 500, f
    assert not (out / "layer_times_bicubic.png").exists()
    js = json.loads((out / "report.json").read_text())
    assert js["meta"]["threads"] == 1 and js["meta"]["lr_size"] == 16

    model = weights.pretrained("tiny")
    m = r["models"]["tiny"]
    assert m["params"] == count_params(model) == js["models"]["tiny"]["params"]
    assert m["size_bytes"] == os.path.getsize(tiny)
    assert m["macs"] == conv_macs(model, torch.rand(1, 3, 16, 16))
    convs = {n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Conv2d)}
    assert convs <= {t["name"] for t in m["layer_times"]}
    assert r["models"]["bicubic"]["params"] == 0

    assert [row["backend"] for row in r["rows"]] == default_backends()
    bic = r["bicubic"]["mean_psnr"]
    assert 20 < bic < 40 and r["models"]["bicubic"]["mean_psnr"] == bic
    eager = r["rows"][0]
    for row in r["rows"]:
        assert row["model"] == "tiny" and set(row["quality"]) == {"china", "flower"}
        assert math.isfinite(row["mean_psnr"]) and row["mean_psnr"] < bic  # untrained
        assert abs(row["mean_psnr"] - eager["mean_psnr"]) < 0.01 and row["max_abs_diff_vs_eager"] < 1e-4
        lat = row["latency"]
        assert 0 < lat["p10_s"] <= lat["median_s"] <= lat["p90_s"] and lat["threads"] == 1 and lat["repeat"] == 1
        assert row["peak_memory"]["bytes"] > 0
        en = row["energy"]
        assert en["joules"] is not None or en["how"].startswith("unavailable: ")

    md = (out / "report.md").read_text()
    for s in ("## Models", "## Per backend", "| tiny | eager |", "| bicubic |", "![PSNR vs latency]",
              "layer_times_tiny.png", "Energy:"):
        assert s in md, s


def test_report_cli_with_checkpoint_paths(tiny, tmp_path, capsys):
    # a .safetensors path (architecture from the model card beside it) on the eager model only
    out = tmp_path / "cli"
    assert cli.main(["report", "--models", str(tiny), "--backends", "eager", "--lr-size", "16",
                     "--repeat", "1", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny/eager (cpu): PSNR" in text and "bicubic: PSNR" in text and "report.md" in text
    assert json.loads((out / "report.json").read_text())["rows"][0]["backend"] == "eager"


def test_report_scores_held_out_photo_folders(tiny, tmp_path):
    import numpy as np
    from PIL import Image

    from sft_kernels.data.datasets import EVAL_CROP

    photos = tmp_path / "heldout"
    photos.mkdir()
    rng = np.random.default_rng(0)
    big = np.kron(rng.integers(0, 256, (80, 70, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 1280 x 1120
    Image.fromarray(big).save(photos / "lake.png")
    out = tmp_path / "out"
    assert cli.main(["report", "--models", str(tiny), "--backends", "eager", "--lr-size", "16", "--repeat", "1",
                     "--threads", "1", "--out", str(out), "--photos", str(photos)]) == 0
    js = json.loads((out / "report.json").read_text())
    assert js["meta"]["eval_images"] == ["china", "flower", "lake"]
    assert js["meta"]["eval_lr_shapes"]["lake"] == [EVAL_CROP // 4, EVAL_CROP // 4]  # the central crop, x1/4
    assert set(js["rows"][0]["quality"]) == {"china", "flower", "lake"}
    md = (out / "report.md").read_text()
    assert "## PSNR gain over bicubic per eval photo (dB)" in md and "| lake |" in md


def test_load_model_infers_architecture_from_a_bare_state_dict(tmp_path):
    src = SFTNet("torch", num_blocks=2, channels=8).reset_parameters_(1)
    path = tmp_path / "model.pth"
    torch.save(src.state_dict(), path)
    model, info = load_model(str(path))
    assert info["architecture"] == {"variant": "torch", "num_blocks": 2, "channels": 8}
    assert info["size_bytes"] == os.path.getsize(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values()))


def test_report_errors_are_clear(tiny, tmp_path, capsys):
    with pytest.raises(ValueError, match="not a shipped weights name"):
        build_report(models=("nope",), out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown backend 'foo'"):
        build_report(models=("tiny",), backends=("foo",), out_dir=str(tmp_path))
    assert cli.main(["report", "--models", "nope", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sft-kernels report: error:") and "tiny" in err and "Traceback" not in err


def test_report_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--models", "--backends", "--out", "--lr-size", "--threads", "--repeat"):
        assert opt in out


def test_pareto_front():
    from sft_kernels.tools.report import pareto

    pts = [(1.0, 30.0), (2.0, 31.0), (2.5, 30.5), (3.0, 31.0), (0.5, 29.0)]
    assert pareto(pts) == [0, 1, 4]  # (2.5, 30.5) is beaten by (2, 31); (3, 31) ties on quality at higher cost
