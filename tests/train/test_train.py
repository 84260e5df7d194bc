"""Training: resumable and deterministic, distillation runs, and 2-process DDP (gloo) under torchrun."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sft_kernels.train import export as weights
from sft_kernels.models import pretrained as shipped_weights
from sft_kernels.data.datasets import PatchSampler
from sft_kernels.testing import tol
from sft_kernels.models import SFTNet
from sft_kernels.train import TrainConfig, train

TINY = dict(num_blocks=1, channels=8, batch=2, patch=8, warmup=1, eval_every=1000, ckpt_every=2, threads=1)


def test_resume_is_bitwise_identical(tmp_path, monkeypatch):
    a = train(TrainConfig(out=str(tmp_path / "a"), steps=4, **TINY), progress=False, log=lambda *_: None)
    # Kill run b during step 3 (after its step-2 checkpoint), then resume it.
    real_batch, calls = PatchSampler.batch, []

    def dying_batch(self, size):
        calls.append(size)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_batch(self, size)

    monkeypatch.setattr(PatchSampler, "batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "b"), steps=4, **TINY), progress=False, log=lambda *_: None)
    monkeypatch.setattr(PatchSampler, "batch", real_batch)
    b = train(TrainConfig(out=str(tmp_path / "b"), steps=4, **TINY), progress=False, log=lambda *_: None)
    for key in ("model", "ema"):  # the weight average resumes too
        for (k, va), vb in zip(a[key].state_dict().items(), b[key].state_dict().values()):
            assert torch.equal(va, vb), (key, k)
    assert not all(torch.equal(e, m) for e, m in zip(a["ema"].parameters(), a["model"].parameters()))
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["history"][-1]["step"] == 4
    ev = summary["history"][-1]["eval"]
    assert set(ev) == {"china", "flower"} and ev["china"]["bicubic_psnr"] > 15


def test_distillation_from_checkpoint_with_adapter(tmp_path):
    teacher = SFTNet(num_blocks=1, channels=12).reset_parameters_(seed=0)
    path = weights.export(teacher, "t", {"architecture": {"variant": "pytorch", "num_blocks": 1, "channels": 12}},
                          directory=tmp_path)
    assert weights.model_from_file(path).channels == 12
    out = train(TrainConfig(out=str(tmp_path / "s"), steps=2, teacher=str(path), **TINY), progress=False,
                log=lambda *_: None)
    ck = torch.load(tmp_path / "s" / "last.pt", weights_only=False)
    assert ck["adapter"]["weight"].shape == (12, 8, 1, 1)  # 1×1 adapter student(8) -> teacher(12) channels
    assert out["model"].channels == 8


def test_bf16_autocast_training_keeps_fp32_weights(tmp_path):
    """--amp bf16 runs the forward under bfloat16 autocast (the same run in fp32 ends at nearby, not equal,
    weights); the weights, the Adam state and the average stay fp32."""
    out = train(TrainConfig(out=str(tmp_path / "amp"), steps=3, amp="bf16", **TINY), progress=False,
                log=lambda *_: None)
    ref = train(TrainConfig(out=str(tmp_path / "fp32"), steps=3, **TINY), progress=False, log=lambda *_: None)
    pairs = list(zip(out["model"].parameters(), ref["model"].parameters()))
    assert not all(torch.equal(a, b) for a, b in pairs)
    assert all(torch.allclose(a, b, **tol("bf16_training")) for a, b in pairs)
    assert all(p.dtype == torch.float32 for p in out["model"].parameters())
    assert all(p.dtype == torch.float32 for p in out["ema"].parameters())
    ck = torch.load(tmp_path / "amp" / "last.pt", weights_only=False)
    assert all(v["exp_avg"].dtype == torch.float32 for v in ck["opt"]["state"].values())
    with pytest.raises(ValueError, match="amp"):
        train(TrainConfig(out=str(tmp_path / "bad"), steps=1, amp="fp8", **TINY), progress=False)


@pytest.mark.slow
def test_torchrun_two_process_gloo(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun, "torchrun not found"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "sft_kernels.tools.cli", "train", "--out",
           str(tmp_path / "ddp"), "--steps", "3", "--batch", "2", "--patch", "8", "--num-blocks", "1", "--channels",
           "8", "--eval-every", "1000", "--ckpt-every", "3", "--warmup", "1", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world"] == 2 and summary["history"][-1]["step"] == 3
    ck = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert len(ck["sampler"]) == 2  # each rank's sampler stream is checkpointed


def test_from_checkpoint_public_pth_and_clear_errors(tmp_path):
    from sft_kernels.train.export import WeightsError

    model = SFTNet("torch").reset_parameters_(seed=3)
    path = tmp_path / "SFTGAN_torch.pth"
    torch.save(model.state_dict(), path)  # the public checkpoints are plain state_dicts
    loaded = SFTNet.from_checkpoint(path)
    assert loaded.variant == "torch"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    sd = model.state_dict()
    sd.pop("conv0.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"1 missing key\(s\), e.g. \['conv0.bias'\]; 1 unexpected key"):
        SFTNet.from_checkpoint(path, variant="torch")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="corrupt or not a checkpoint"):
        SFTNet.from_checkpoint(path)


def test_shipped_weights_hash_is_checked(tmp_path, monkeypatch):
    from sft_kernels.train.export import WeightsError

    m = SFTNet(num_blocks=1, channels=8).reset_parameters_(seed=0)
    weights.export(m, "tiny", {"architecture": {"variant": "pytorch", "num_blocks": 1, "channels": 8}},
                   directory=tmp_path)
    monkeypatch.setattr(shipped_weights, "WEIGHTS_DIR", tmp_path)
    assert weights.shipped() == ["tiny"]
    assert weights.pretrained("tiny").channels == 8
    data = bytearray((tmp_path / "tiny.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "tiny.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        weights.pretrained("tiny")


def test_export_run_writes_card_with_command(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "r"), steps=2, **TINY)
    train(cfg, progress=False, log=lambda *_: None)
    path = weights.export_run(tmp_path / "r", "mini", directory=tmp_path / "w")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == weights.sha256(path)
    assert card["command"].startswith("sft-kernels train --out") and "--num-blocks 1" in card["command"]
    assert card["architecture"] == {"variant": "pytorch", "num_blocks": 1, "channels": 8}
    assert set(card["final_eval"]) == {"china", "flower"}
    with pytest.raises(weights.WeightsError, match="not a finished training run"):
        weights.export_run(tmp_path / "nothing", "x", directory=tmp_path / "w")


def test_fine_tune_from_init_records_provenance(tmp_path):
    first = TrainConfig(out=str(tmp_path / "a"), steps=1, **TINY)
    train(first, progress=False, log=lambda *_: None)
    a_path = weights.export_run(tmp_path / "a", "a", directory=tmp_path / "w")
    ft = TrainConfig(out=str(tmp_path / "b"), steps=1, init=str(a_path), **TINY)
    train(ft, progress=False, log=lambda *_: None)
    card = json.loads(weights.export_run(tmp_path / "b", "b", directory=tmp_path / "w", notes="why").with_suffix(
        ".json").read_text())
    assert card["init"] == {"name": str(a_path), "sha256": weights.sha256(a_path)} and card["notes"] == "why"
    assert "--init" in card["command"]
    with pytest.raises(ValueError, match="pass the same"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, init=str(a_path), **{**TINY, "channels": 16}),
              progress=False, log=lambda *_: None)


def test_gradual_pruning_run_reaches_its_sparsity_and_exports(tmp_path):
    from sft_kernels.nn import SparseConv2d
    from sft_kernels.train.export import export_run

    cfg = TrainConfig(out=str(tmp_path / "p"), steps=6, prune=0.8, prune_until=0.5, prune_every=1, **TINY)
    out = train(cfg, progress=False, log=lambda *_: None)
    for key in ("model", "ema"):
        convs = [m for m in out[key].modules() if isinstance(m, SparseConv2d)]
        assert convs and all(abs(m.density - 0.2) < 0.01 for m in convs), key
        assert all(bool((m.weight[~m.mask] == 0).all()) for m in convs), key
    path = export_run(tmp_path / "p", "pruned", directory=tmp_path / "w")
    loaded = SFTNet.from_checkpoint(path)
    assert isinstance(loaded.sft_branch[0].conv0, SparseConv2d) and loaded.fused


def test_channel_pruning_run_distills_through_an_adapter(tmp_path):
    teacher = tmp_path / "t.pt"
    torch.save(SFTNet("pytorch", TINY["num_blocks"], TINY["channels"]).state_dict(), teacher)
    cfg = TrainConfig(out=str(tmp_path / "c"), steps=2, prune_channels=0.5, init=str(teacher),
                      teacher=str(teacher), **TINY)
    out = train(cfg, progress=False, log=lambda *_: None)
    assert out["model"].conv0.out_channels == TINY["channels"] // 2


@pytest.mark.parametrize("kind", ["factorize", "separable"])
def test_decomposed_trunk_run_distills_exports_and_loads(tmp_path, kind):
    """--factorize / --separable: the trunk's 3x3 convs become pairs initialised from the init's weights, the run
    distills, and the export loads back (restore_ rebuilds the pairs from the state_dict's keys)."""
    from sft_kernels.nn import SeparableConv2d
    from sft_kernels.train.export import export_run
    from sft_kernels.transforms import SpatialSVDConv2d

    teacher = tmp_path / "t.pt"
    torch.save(SFTNet("pytorch", TINY["num_blocks"], TINY["channels"]).reset_parameters_(3).state_dict(), teacher)
    extra = dict(factorize=0.5) if kind == "factorize" else dict(separable=2)
    cfg = TrainConfig(out=str(tmp_path / kind), steps=2, init=str(teacher), teacher=str(teacher), **extra, **TINY)
    out = train(cfg, progress=False, log=lambda *_: None)
    pair = SpatialSVDConv2d if kind == "factorize" else SeparableConv2d
    assert isinstance(out["model"].sft_branch[0].conv0, pair) and not out["model"].fused
    assert isinstance(out["model"].conv0, torch.nn.Conv2d)  # only the trunk
    path = export_run(tmp_path / kind, kind, directory=tmp_path / "w")
    loaded = SFTNet.from_checkpoint(path)
    assert isinstance(loaded.sft_branch[0].conv0, pair) and not loaded.fused
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out["ema"].eval()(x))
    with pytest.raises(ValueError, match="pick one"):
        train(TrainConfig(out=str(tmp_path / "x"), steps=1, factorize=0.5, separable=1, **TINY), progress=False,
              log=lambda *_: None)


def test_train_command_renders_lists_and_flags_as_the_cli_takes_them():
    from sft_kernels.train.export import train_command

    cmd = train_command(dict(out="r", steps=5, zooms=[], data=["a", "b"], qat=True))  # lists as a checkpoint has
    assert cmd == "sft-kernels train --out r --steps 5 --data a --data b --qat"
    assert train_command(dict(out="r", zooms=(0.75, 0.5))) == "sft-kernels train --out r --zooms 0.75 0.5"


@pytest.mark.parametrize("flag,value", [("--patch", "0"), ("--batch", "0"), ("--steps", "-1"), ("--lr", "0")])
def test_train_rejects_empty_sizes_before_building_anything(flag, value, tmp_path, capsys):
    """A zero patch or batch is refused with the flag's name (it had failed inside the first step)."""
    from sft_kernels.tools.cli import main

    rc = main(["train", "--out", str(tmp_path / "run"), "--steps", "2", "--batch", "2", "--patch", "8",
               "--num-blocks", "1", "--channels", "8", flag, value])
    assert rc == 2 and f"{flag} must be" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_short_pruning_run_reaches_its_sparsity_and_a_rerun_keeps_the_final_eval(tmp_path):
    """--prune with fewer steps than --prune-every still prunes at prune_until (it had stayed dense), and the last
    checkpoint carries its own step's eval, so running the finished run again keeps it in summary.json."""
    cfg = TrainConfig(out=str(tmp_path / "p"), steps=6, prune=0.5, **dict(TINY, eval_every=0))
    result = train(cfg, progress=False, log=lambda *_: None)
    masks = [m.mask for m in result["model"].modules() if hasattr(m, "mask")]
    kept = sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert masks and abs(kept - 0.5) < 0.01
    again = train(cfg, progress=False, log=lambda *_: None)
    assert [h["step"] for h in again["history"]] == [6]
    assert [h["step"] for h in json.loads((tmp_path / "p" / "summary.json").read_text())["history"]] == [6]


def test_resuming_with_other_settings_names_them(tmp_path):
    """A run resumed with another width (or QAT, pruning, a teacher...) is refused with the setting's name and what
    to do (it had failed inside load_state_dict with a list of tensors)."""
    train(TrainConfig(out=str(tmp_path / "r"), steps=2, **TINY), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match=r"--channels 8 \(now 16\).*another --out"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=4, **dict(TINY, channels=16)), progress=False,
              log=lambda *_: None)


def test_exporting_a_qat_run_points_to_its_int8_model(tmp_path):
    """A finished --qat run holds fake-quantized convs: export says where the run's int8 model is (it had failed on
    the state_dict's keys)."""
    from sft_kernels.train.export import WeightsError, export_run

    train(TrainConfig(out=str(tmp_path / "q"), steps=2, qat=True, **TINY), progress=False, log=lambda *_: None)
    with pytest.raises(WeightsError, match="int8.safetensors"):
        export_run(tmp_path / "q", "q", directory=tmp_path / "w")
