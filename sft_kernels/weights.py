"""Weights: shipped SFTNet checkpoints (safetensors + sha256-checked model card) and loading of any
SFTNet checkpoint (.safetensors, or a public SFTGAN .pth state_dict) with clear errors."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "models" / "weights"


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or does not fit the model (the message says which and why)."""


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader failure means the same thing to the user
        raise WeightsError(f"cannot read weights {str(path)!r}: the file is corrupt or not a checkpoint "
                           f"({type(e).__name__}: {str(e)[:120]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{str(path)!r} does not hold a state_dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def load_weights(model: nn.Module, path, expected_sha256: Optional[str] = None) -> nn.Module:
    """Load `path` into `model` strictly; missing/unexpected keys and shape mismatches are reported by name."""
    if expected_sha256 is not None:
        got = sha256(path)
        if got != expected_sha256:
            raise WeightsError(f"weights file {str(path)!r} is corrupt or was replaced: sha256 {got[:16]}… "
                               f"does not match the model card's {expected_sha256[:16]}… (reinstall the package)")
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
              if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:2]}")
        raise WeightsError(f"{str(path)!r} does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    return model


def export(model: nn.Module, name: str, card: dict, directory=WEIGHTS_DIR) -> Path:
    """Write `name`.safetensors and `name`.json (the model card, with the file's sha256)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({k: v.detach().contiguous().float().cpu() for k, v in model.state_dict().items()}, str(path))
    card = dict(card, file=path.name, sha256=sha256(path), bytes=os.path.getsize(path))
    (directory / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    return path


def train_command(config: dict) -> str:
    """The `sft-kernels train` command line that reproduces a run with this configuration."""
    from .train import TrainConfig

    default = TrainConfig()
    parts = ["sft-kernels train"]
    for key, value in config.items():
        if getattr(default, key, object()) != value or key == "out":
            parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def _init_provenance(init: str) -> dict:
    """Where a fine-tuned run's starting weights came from: the shipped card (and the commit that holds it)."""
    import subprocess

    out = dict(name=init)
    if init in shipped():
        c = card(init)
        out.update(sha256=c.get("sha256"), command=c.get("command"), steps=c.get("config", {}).get("steps"))
        try:
            out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=WEIGHTS_DIR, capture_output=True,
                                               text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    elif Path(init).is_file():
        out["sha256"] = sha256(init)
    return out


def export_run(run_dir, name: str, directory=None, notes: str = "") -> Path:
    """Ship a finished run (`run_dir`/last.pt + summary.json) as `name` with a model card."""
    import datetime
    import platform

    from .data.datasets import EVAL_IMAGES, TRAIN_IMAGES
    from .models import SFTNet

    run_dir = Path(run_dir)
    ck_path, summary_path = run_dir / "last.pt", run_dir / "summary.json"
    if not ck_path.is_file() or not summary_path.is_file():
        raise WeightsError(f"{str(run_dir)!r} is not a finished training run (needs last.pt and summary.json)")
    ck = torch.load(str(ck_path), map_location="cpu", weights_only=False)
    summary = json.loads(summary_path.read_text())
    cfg = ck["config"]
    if ck["step"] < cfg["steps"]:
        raise WeightsError(f"run {str(run_dir)!r} stopped at step {ck['step']} of {cfg['steps']}; resume it first")
    model = SFTNet(cfg["variant"], cfg["num_blocks"], cfg["channels"])
    model.load_state_dict(ck.get("ema") or ck["model"])  # the weight average the run evaluated, if it kept one
    card_ = dict(
        name=name,
        architecture=dict(variant=cfg["variant"], num_blocks=cfg["num_blocks"], channels=cfg["channels"]),
        params=sum(p.numel() for p in model.parameters()),
        command=train_command(cfg),
        config=cfg,
        data=dict(train=list(TRAIN_IMAGES), eval=list(EVAL_IMAGES),
                  degradation="HR mod-crop 4; LR = MATLAB-style bicubic x1/4 with antialiasing; seg = background"),
        train_seconds=round(summary["seconds"], 1),
        processes=summary.get("world", 1),
        final_eval=summary["history"][-1]["eval"] if summary["history"] else None,
        exported=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        torch=torch.__version__,
    )
    if cfg.get("init"):  # fine-tuned: record the starting weights before they may be overwritten
        card_["init"] = _init_provenance(cfg["init"])
    if notes:
        card_["notes"] = notes
    return export(model, name, card_, directory if directory is not None else WEIGHTS_DIR)


def shipped() -> list:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def card(name: str) -> dict:
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no shipped weights named {name!r}; available: {shipped() or 'none'}")
    return json.loads(path.read_text())


def model_from_file(path) -> nn.Module:
    """An SFTNet whose variant, depth and width are read off the checkpoint's keys, with its weights loaded."""
    from .models import SFTNet

    sd = read_state_dict(path)
    if "conv0.weight" not in sd:
        raise WeightsError(f"{str(path)!r} is not an SFTNet checkpoint (no 'conv0.weight')")
    variant = "pytorch" if "HR_branch.0.weight" in sd else "torch"
    blocks = sum(1 for k in sd if k.startswith("sft_branch.") and k.endswith(".conv0.weight"))
    return load_weights(SFTNet(variant, blocks, sd["conv0.weight"].shape[0]), path).eval()


def resolve_model(name_or_path: str) -> nn.Module:
    """A shipped model by name (sha256-checked) or any SFTNet checkpoint by path."""
    if name_or_path in shipped():
        return pretrained(name_or_path)
    if Path(name_or_path).suffix in (".safetensors", ".pth", ".pt"):
        return model_from_file(name_or_path)
    raise WeightsError(f"{name_or_path!r} is neither a shipped model ({shipped() or 'none shipped'}) nor a "
                       ".safetensors/.pth checkpoint path")


def pretrained(name: str = "teacher") -> nn.Module:
    """A shipped, trained SFTNet (sha256-checked) in eval mode."""
    from .models import SFTNet

    c = card(name)
    arch = c["architecture"]
    model = SFTNet(arch["variant"], arch["num_blocks"], arch["channels"])
    return load_weights(model, WEIGHTS_DIR / c["file"], expected_sha256=c["sha256"]).eval()
