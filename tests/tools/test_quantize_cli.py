"""`sft-kernels quantize` writes an int8 checkpoint + card that loads by path (and the shipped teacher-int8 by name),
runs, and stays close to its float model; `upscale --model` takes it."""
import json

import pytest
import torch
from safetensors.torch import save_file

from sft_kernels.models import SFTNet
from sft_kernels.models.pretrained import pretrained, resolve_model, shipped
from sft_kernels.nn import QuantConv2d
from sft_kernels.testing import tol
from sft_kernels.tools.cli import main


def _sqnr(y, ref):
    return 10 * torch.log10((ref ** 2).sum() / ((y - ref) ** 2).sum().clamp_min(1e-20)).item()


def test_quantize_command_round_trip(tmp_path, capsys):
    model = SFTNet(num_blocks=2, channels=16).reset_parameters_(seed=0).eval()
    src = tmp_path / "tiny.safetensors"
    save_file(model.state_dict(), str(src))
    out = tmp_path / "tiny-int8"
    assert main(["quantize", "--model", str(src), "--crops", "2", "--budget", "-1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR china (held out)" in printed and "tiny-int8.safetensors" in printed
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["config"]["budget_db"] is None and card["quantization"]
    q = resolve_model(str(out.with_suffix(".safetensors")))
    n_int8 = sum(isinstance(m, QuantConv2d) for m in q.modules())
    assert n_int8 == len(card["quantization"]) > 0
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert _sqnr(q(x), model(x)) > tol("int8_sqnr_db")["atol"]
    png = tmp_path / "in.png"
    from PIL import Image
    Image.fromarray((torch.rand(20, 24, 3) * 255).byte().numpy()).save(png)
    assert main(["upscale", str(png), "-o", str(tmp_path / "o.png"), "--model", str(out.with_suffix(".safetensors")),
                 "--no-progress"]) == 0
    assert Image.open(tmp_path / "o.png").size == (96, 80)


@pytest.mark.skipif("teacher-int8" not in shipped(), reason="teacher-int8 not shipped")
def test_shipped_teacher_int8_loads_and_matches_its_card():
    q = pretrained("teacher-int8")
    card = json.loads((__import__("sft_kernels.models.pretrained", fromlist=["x"]).WEIGHTS_DIR
                       / "teacher-int8.json").read_text())
    assert sum(isinstance(m, QuantConv2d) for m in q.modules()) == len(card["quantization"])
    f = pretrained("teacher")
    from sft_kernels.data.datasets import sr_pair
    x = sr_pair("flower")[0].reshape(1, 3, *sr_pair("flower")[0].shape[-2:])[..., 40:80, 60:100]  # a photo, held out
    with torch.no_grad():
        assert _sqnr(q(x), f(x)) > 35  # measured 40+ dB on photos (random noise, out of distribution: ~25)


def test_quantize_command_errors(tmp_path, capsys):
    assert main(["quantize", "--model", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err
