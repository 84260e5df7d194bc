"""restore_: make a freshly built model take the state_dict of a transformed one, whatever changed its structure.

A checkpoint records weights, not modules: a channel-pruned conv has other widths, a pruned one a mask, a factorized
one the two convs `<conv>.v` / `<conv>.h` of a SpatialSVDConv2d, a depthwise-separable one `<conv>.dw` / `<conv>.pw`
of a SeparableConv2d. restore_ rebuilds those modules from the keys and shapes alone (then load_state_dict fills
the weights), so the checkpoint loader, exports and training inits need no side file. Models that adapt to
transforms (SFTNet's fused forward) are notified as the transform itself would have notified them.
"""
from __future__ import annotations

from torch import nn

from ..nn import SeparableConv2d
from .factorize import SpatialSVDConv2d
from .prune import restore_pruned_, restore_shapes_
from .swap import notify, set_module


def _plain_convs(model: nn.Module, state_dict: dict, first: str, second: str):
    """(name, conv) of the plain convs whose state_dict slots hold `<name>.<first>.weight` and `<name>.<second>...`."""
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Conv2d) and f"{name}.{first}.weight" in state_dict \
                and f"{name}.{second}.weight" in state_dict and f"{name}.weight" not in state_dict:
            yield name, m


def restore_factorized_(model: nn.Module, state_dict: dict) -> list:
    """Convs saved as SpatialSVDConv2d pairs (factorize_) rebuilt as such pairs of the saved rank; their names."""
    done = []
    for name, conv in _plain_convs(model, state_dict, "v", "h"):
        v_w, h_w = state_dict[f"{name}.v.weight"], state_dict[f"{name}.h.weight"]
        rank, (r, s) = v_w.shape[0], conv.kernel_size
        extra = dict(dtype=conv.weight.dtype, device=conv.weight.device)
        v = nn.Conv2d(v_w.shape[1], rank, (r, 1), (conv.stride[0], 1), (conv.padding[0], 0),
                      (conv.dilation[0], 1), bias=f"{name}.v.bias" in state_dict, **extra)
        h = nn.Conv2d(rank, h_w.shape[0], (1, s), (1, conv.stride[1]), (0, conv.padding[1]), (1, conv.dilation[1]),
                      bias=f"{name}.h.bias" in state_dict, **extra)
        set_module(model, name, SpatialSVDConv2d(v, h))
        done.append(name)
    if done:
        notify(model, "factorize_", True)
    return done


def restore_separable_(model: nn.Module, state_dict: dict) -> list:
    """Convs saved as SeparableConv2d pairs (to_separable_) rebuilt with the saved multiplier; their names."""
    done = []
    for name, conv in _plain_convs(model, state_dict, "dw", "pw"):
        dw_w, pw_w = state_dict[f"{name}.dw.weight"], state_dict[f"{name}.pw.weight"]
        mult = dw_w.shape[0] // conv.in_channels
        new = SeparableConv2d(conv.in_channels, pw_w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, multiplier=mult, bias=True, backend=getattr(conv, "backend", None))
        if f"{name}.dw.bias" not in state_dict:
            new.dw.bias = None
        if f"{name}.pw.bias" not in state_dict:
            new.pw.bias = None
        set_module(model, name, new.to(dtype=conv.weight.dtype, device=conv.weight.device))
        done.append(name)
    if done:
        notify(model, "to_separable_", True)
    return done


def restore_(model: nn.Module, state_dict: dict) -> None:
    """Rebuild `model`'s modules to the structure `state_dict` was saved from: channel widths (restore_shapes_),
    masks (restore_pruned_), factorized and separable pairs. A no-op for a state_dict of the same structure."""
    restore_shapes_(model, state_dict)
    restore_pruned_(model, state_dict)
    restore_factorized_(model, state_dict)
    restore_separable_(model, state_dict)
