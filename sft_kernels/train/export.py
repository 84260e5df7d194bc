"""Exporting trained SFTNet runs as shipped weights with model cards. Loading lives in sft_kernels.models
(checkpoint.py: reading any checkpoint; pretrained.py: the shipped weights); its names are re-exported here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..models import SFTNet
from ..models import pretrained as pretrained_mod
from ..models.checkpoint import WeightsError, load_weights, read_state_dict, sha256
from ..models.pretrained import card, model_from_file, pretrained, resolve_model, shipped
from .loop import TrainConfig

__all__ = ["WeightsError", "load_weights", "read_state_dict", "sha256", "card", "model_from_file", "pretrained",
           "resolve_model", "shipped", "export", "export_run", "train_command"]


def export(model: nn.Module, name: str, card: dict, directory=None) -> Path:
    """Write `name`.safetensors and `name`.json (the model card, with the file's sha256)."""
    from safetensors.torch import save_file

    directory = Path(directory if directory is not None else pretrained_mod.WEIGHTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({k: (v.float() if v.is_floating_point() else v).detach().contiguous().cpu()  # masks stay bool
               for k, v in model.state_dict().items()}, str(path))
    card = dict(card, file=path.name, sha256=sha256(path), bytes=os.path.getsize(path))
    (directory / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    return path


def train_command(config: dict) -> str:
    """The `sft-kernels train` command line that reproduces a run with this configuration."""
    default = TrainConfig()
    parts = ["sft-kernels train"]
    for key, value in config.items():
        base = getattr(default, key, object())
        if isinstance(value, (list, tuple)):  # checkpoints and JSON hold tuples as lists
            value, base = tuple(value), tuple(base) if isinstance(base, (list, tuple)) else base
        if base == value and key != "out":
            continue
        flag = f"--{key.replace('_', '-')}"
        if key == "data":  # an appending option: once per folder
            parts += [f"{flag} {v}" for v in value]
        elif isinstance(value, tuple):
            parts.append(" ".join([flag, *map(str, value)]))
        elif isinstance(value, bool):
            parts.append(flag)
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _init_provenance(init: str) -> dict:
    """Where a fine-tuned run's starting weights came from: the shipped card (and the commit that holds it)."""
    import subprocess

    out = dict(name=init)
    if init in shipped():
        c = card(init)
        out.update(sha256=c.get("sha256"), command=c.get("command"), steps=c.get("config", {}).get("steps"))
        try:
            out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pretrained_mod.WEIGHTS_DIR,
                                               capture_output=True,
                                               text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    elif Path(init).is_file():
        out["sha256"] = sha256(init)
    return out


def _heldout_eval(model: nn.Module, folders) -> list:
    """For each training folder with a held-out sibling (`sft-kernels data` makes `<folder>-heldout`): its sources
    and the model's PSNR / SSIM there, next to bicubic's (central crops, as `sft-kernels report --photos` scores)."""
    from ..data.collect import heldout_dir, manifests
    from ..data.folders import DataError, index_folders
    from .loop import evaluate

    out = []
    for d in folders:
        h = heldout_dir(Path(d).expanduser())
        if not h.is_dir():
            continue
        try:
            paths = [e.path for e in index_folders([h]).entries]
        except DataError:  # an empty held-out folder: nothing to score
            continue
        out.append(dict(folder=str(h), sources=manifests([h]), eval=evaluate(model, names=paths)))
    return out


def export_run(run_dir, name: str, directory=None, notes: str = "") -> Path:
    """Ship a finished run (`run_dir`/last.pt + summary.json) as `name` with a model card."""
    import datetime
    import platform

    from ..data.collect import manifests
    from ..data.datasets import EVAL_IMAGES, TRAIN_IMAGES
    from ..transforms.restore import restore_

    run_dir = Path(run_dir)
    ck_path, summary_path = run_dir / "last.pt", run_dir / "summary.json"
    if not ck_path.is_file() or not summary_path.is_file():
        raise WeightsError(f"{str(run_dir)!r} is not a finished training run (needs last.pt and summary.json)")
    ck = torch.load(str(ck_path), map_location="cpu", weights_only=False)
    summary = json.loads(summary_path.read_text())
    cfg = ck["config"]
    if ck["step"] < cfg["steps"]:
        raise WeightsError(f"run {str(run_dir)!r} stopped at step {ck['step']} of {cfg['steps']}; resume it first")
    if cfg.get("qat"):  # fake-quantized convs: the run wrote its int8 model itself
        raise WeightsError(f"run {str(run_dir)!r} is quantization-aware training: its int8 model is "
                           f"{str(run_dir / 'int8.safetensors')!r} (with its card), written when the run finished; "
                           "load it with --model, or copy it beside the package's weights")
    model = SFTNet(cfg["variant"], cfg["num_blocks"], cfg["channels"])
    sd = ck.get("ema") or ck["model"]  # the weight average the run evaluated, if it kept one
    restore_(model, sd)  # a pruning run's convs: other widths, or SparseConv2d with their masks
    model.load_state_dict(sd)
    fresh = dict(SFTNet(cfg["variant"], cfg["num_blocks"], cfg["channels"]).named_modules())
    pruned_shapes = {n: list(m.weight.shape[:2]) for n, m in model.named_modules()  # a channel-pruned run's widths
                     if isinstance(m, nn.Conv2d) and n in fresh and fresh[n].weight.shape != m.weight.shape}
    card_ = dict(
        name=name,
        architecture=dict(variant=cfg["variant"], num_blocks=cfg["num_blocks"], channels=cfg["channels"],
                          **({"conv_shapes_out_in": pruned_shapes} if pruned_shapes else {})),
        params=sum(p.numel() for p in model.parameters()),
        command=train_command(cfg),
        config=cfg,
        data=dict(train=list(TRAIN_IMAGES) if not cfg.get("data") else [],
                  train_folders=list(cfg.get("data") or []), train_sources=manifests(cfg.get("data") or []),
                  eval=list(EVAL_IMAGES),
                  degradation="HR mod-crop 4; LR = MATLAB-style bicubic x1/4 with antialiasing; seg = background",
                  rebuild=("make data  (sft-kernels data --install --out data/photos)" if cfg.get("data") else "")),
        train_seconds=round(summary["seconds"], 1),
        processes=summary.get("world", 1),
        final_eval=summary["history"][-1]["eval"] if summary["history"] else None,
        exported=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        torch=torch.__version__,
    )
    held = _heldout_eval(model, cfg.get("data") or [])
    if held:
        card_["data"]["heldout"] = held
    if cfg.get("init"):  # fine-tuned: record the starting weights before they may be overwritten
        card_["init"] = _init_provenance(cfg["init"])
    if notes:
        card_["notes"] = notes
    return export(model, name, card_, directory)


