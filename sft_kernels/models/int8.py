"""Int8 SFTNet checkpoints (what `sft-kernels quantize` writes and `pretrained("teacher-int8")` reads): a
safetensors file of the quantized model's tensors (int8 weights stay int8) and a model card beside it whose
"quantization" entry holds each int8 conv's input scale / zero point and mode. Loading rebuilds the architecture,
puts QuantConv2d shells where the card says, and loads the tensors strictly."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..nn.quantized import QuantConv2d
from .checkpoint import WeightsError, sha256
from .sftnet import SFTNet


def save_int8(model: nn.Module, path, card: dict) -> Path:
    """Write `path` (.safetensors) and its card (.json) for a quantized SFTNet; returns the weights' path."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    save_file(tensors, str(path))
    quant = {n: m.get_extra_state() for n, m in model.named_modules() if isinstance(m, QuantConv2d)}
    arch = dict(variant=model.variant, num_blocks=model.num_blocks, channels=model.channels)
    card = dict(card, architecture=arch, quantization=quant, file=path.name, sha256=sha256(path),
                bytes=os.path.getsize(path))
    path.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return path


def is_int8_card(card: dict) -> bool:
    return isinstance(card, dict) and "quantization" in card


def load_int8(card: dict, weights, expected_sha256=None) -> nn.Module:
    """The quantized SFTNet a card describes, with its tensors from `weights`, in eval mode."""
    from safetensors.torch import load_file

    if expected_sha256 is not None and sha256(weights) != expected_sha256:
        raise WeightsError(f"weights file {str(weights)!r} is corrupt or was replaced: its sha256 does not match "
                           "the model card's (reinstall the package, or quantize again)")
    from ..transforms.restore import restore_

    arch = card["architecture"]
    model = SFTNet(arch["variant"], arch["num_blocks"], arch["channels"])
    sd = load_file(str(weights))
    # channel-pruned widths, factorized and separable pairs: rebuilt from the int8 weights' shapes as from float ones
    restore_(model, {k.replace(".weight_int8", ".weight"): v for k, v in sd.items()})
    for name, state in card["quantization"].items():
        try:
            conv = model.get_submodule(name)
        except AttributeError:
            raise WeightsError(f"the card names a conv {name!r} this architecture does not have") from None
        q = QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None)
        q.set_extra_state(state)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, q)
    own = {k for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
    if missing or unexpected:
        raise WeightsError(f"{str(weights)!r} does not fit its card: missing {missing[:3]}, unexpected "
                           f"{unexpected[:3]}")
    model.load_state_dict(sd, strict=False)
    from ..transforms.swap import notify

    notify(model, "quantize_", True)  # the fused forward, as quantize_ leaves it
    return model.eval()
