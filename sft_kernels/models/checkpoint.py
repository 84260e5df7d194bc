"""Reading and strictly loading checkpoints (.safetensors, or a public SFTGAN .pth state_dict), with errors that
name the file and what does not fit. Model-agnostic: SFTNet's own rule for its architecture is in sftnet.py."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn


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
    from ..transforms.restore import restore_

    restore_(model, sd)  # a transformed model: saved widths, masks, factorized / separable pairs rebuilt
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
