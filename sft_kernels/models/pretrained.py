"""The shipped, trained SFTNet weights (safetensors + a sha256-checked model card each, in models/weights/) and
resolving a model by shipped name or checkpoint path: the one loader the CLI, report, upscale and training use."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

from torch import nn

from .checkpoint import WeightsError, load_weights
from .int8 import is_int8_card, load_int8
from .sftnet import SFTNet

WEIGHTS_DIR = Path(__file__).parent / "weights"


def shipped() -> list:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def card(name: str) -> dict:
    path = WEIGHTS_DIR / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no shipped weights named {name!r}; available: {shipped() or 'none'}")
    return json.loads(path.read_text())


def pretrained(name: str = "teacher") -> nn.Module:
    """A shipped, trained SFTNet (sha256-checked) in eval mode; an int8 one (QuantConv2d convs) for int8 cards."""
    c = card(name)
    if is_int8_card(c):
        return load_int8(c, WEIGHTS_DIR / c["file"], expected_sha256=c["sha256"])
    arch = c["architecture"]
    model = SFTNet(arch["variant"], arch["num_blocks"], arch["channels"])
    return load_weights(model, WEIGHTS_DIR / c["file"], expected_sha256=c["sha256"]).eval()


def model_from_file(path) -> nn.Module:
    """An SFTNet whose architecture is read off the checkpoint (a model card beside it, else its keys); an int8
    one when the card says so (`sft-kernels quantize`)."""
    beside = Path(path).with_suffix(".json")
    if beside.is_file():
        c = json.loads(beside.read_text())
        if is_int8_card(c):
            return load_int8(c, path)
    return SFTNet.from_checkpoint(path)


def resolve_model(name_or_path: Union[str, os.PathLike, nn.Module] = "teacher") -> nn.Module:
    """A shipped model by name (sha256-checked) or any SFTNet checkpoint by path (.safetensors / .pth / .pt;
    architecture from a card beside it or its keys), in eval mode. An ``nn.Module`` is returned as is. Raises
    ``WeightsError`` (a RuntimeError), FileNotFoundError or TypeError with one line saying why."""
    if isinstance(name_or_path, nn.Module):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model name or a checkpoint path, got "
                        f"{type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    names = shipped()
    if isinstance(name_or_path, str) and text in names:
        try:
            return pretrained(text)
        except WeightsError:
            raise
        except (ValueError, KeyError, TypeError) as e:  # unreadable model card (JSON) or missing fields
            raise WeightsError(f"the model card of the shipped model {text!r} is corrupt "
                               f"({type(e).__name__}: {e}); reinstall the package") from None
    path = Path(text).expanduser()
    if path.suffix.lower() in (".safetensors", ".pth", ".pt") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"weights file {text!r} does not exist")
        return model_from_file(path)
    hint = ", ".join(names) if names else "none are installed yet"
    raise WeightsError(f"{text!r} is neither a shipped model name (shipped: {hint}) nor the path of a "
                       ".safetensors/.pth checkpoint")
