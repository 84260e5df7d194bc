"""A transformed model hands its output back in the caller's layout.

Our layers keep activations channels_last between them whatever the caller passes (runtime/layout.py), so a model
fed an ordinary NCHW tensor had returned channels_last maps, and code after its last conv that flattened them with
`x.view(x.size(0), -1)` (VGG-style heads) raised "view size is not compatible with input tensor's size and stride".
Each transform (through `swap.notify`) puts a forward pre-hook on the model that notes whether the caller passed an
NCHW map, and a forward hook on the model's own output that makes it NCHW-contiguous for such a caller. Inside the
forward, the layers of ours whose maps reach a `.view` (through anything but another layer of ours) get the same
hook, by the fx graph; an untraceable model's last layer of ours (module order) gets it. Other layers are left
alone: a residual block whose last conv handed an NCHW map to an add with a channels_last one paid a slow mixed-layout
add and a copy back (a 256-channel 56² block, ~12 ms a forward against ~9 for all its convs).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import Conv2d, ConvTranspose2d, QuantConv2d, SeparableConv2d
from ..runtime import layout
from . import tracing

# layers whose output is channels_last by the layout policy
_OURS = (Conv2d, ConvTranspose2d, QuantConv2d, SeparableConv2d)


def is_ours(m: nn.Module) -> bool:
    """A layer whose output is channels_last by the layout policy (or one that says so: quantize_'s switches of
    convs)."""
    return isinstance(m, _OURS) or getattr(m, "channels_last_output", False)


class CallerLayout:
    """Forward pre-hook on the model (with kwargs): whether this forward's first 4-D map, positional or keyword, is
    not channels_last, by eager PyTorch's rule: a map contiguous in both layouts (one channel, or 1×1) counts as
    NCHW, and so does a strided view that is neither."""

    def __init__(self):
        self.nchw = False

    def __call__(self, module, args, kwargs):
        x = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim() == 4), None)
        self.nchw = x is not None and (x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last))


class BackToCaller:
    """Forward hook: the module's 4-D outputs (a tensor, or within tuples, lists and dicts) NCHW-contiguous when
    the caller's input was NCHW."""

    def __init__(self, caller: CallerLayout):
        self.caller = caller

    def __call__(self, module, args, out):
        return _contiguous(out) if self.caller.nchw else None


def _contiguous(out):
    if isinstance(out, torch.Tensor):
        return layout.to_nchw(out)
    if isinstance(out, (tuple, list)):
        items = [_contiguous(o) for o in out]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)  # (a namedtuple takes fields)
    if isinstance(out, dict):
        return type(out)((k, _contiguous(v)) for k, v in out.items())
    return out


def remove(model: nn.Module) -> None:
    """Take this module's hooks off `model` (all of its modules)."""
    for m in model.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks):
            for key in [k for k, h in hooks.items() if isinstance(h, (CallerLayout, BackToCaller))]:
                del hooks[key]
                m._forward_pre_hooks_with_kwargs.pop(key, None)


def prime(model: nn.Module, args: tuple) -> None:
    """Note the caller's layout from `args` without calling the model (an fx Interpreter runs its nodes only)."""
    for hook in list(model._forward_pre_hooks.values()):
        if isinstance(hook, CallerLayout):
            hook(model, args, {})


def install(model: nn.Module) -> None:
    """(Re)install the hooks on `model` for its current layers (none if it has no layer of ours, or is one)."""
    remove(model)
    if is_ours(model):
        return
    layers = _layers_before_views(model)
    if layers is not None:
        caller = CallerLayout()
        model.register_forward_pre_hook(caller, with_kwargs=True)
        for layer in layers:
            layer.register_forward_hook(BackToCaller(caller))
        model.register_forward_hook(BackToCaller(caller))  # a fused forward (SFTNet's) that calls no module of ours


def _layers_before_views(model: nn.Module):
    """The layers of ours whose output reaches a `.view` call through no other layer of ours (by the fx graph), or
    [the last layer of ours] if the model does not trace; None if it has no layer of ours."""
    mods = dict(model.named_modules())
    graph = tracing.graph(model)
    if graph is not None:
        ours = [n for n in graph.nodes if n.op == "call_module" and is_ours(mods.get(n.target))]
        if ours:
            return [mods[n.target] for n in ours if _reaches_view(n, mods)]
    last = _last_in_module_order(model)
    return None if last is None else [last]


def _reaches_view(node, mods: dict) -> bool:
    seen, todo = set(), list(node.users)
    while todo:
        n = todo.pop()
        if n in seen or (n.op == "call_module" and is_ours(mods.get(n.target))):
            continue
        seen.add(n)
        if (n.op, n.target) in (("call_method", "view"), ("call_function", torch.Tensor.view)):
            return True
        todo.extend(n.users)
    return False


def _last_in_module_order(model: nn.Module):
    ours, inside = [], ()
    for name, m in model.named_modules():
        if name and is_ours(m) and not name.startswith(inside):  # not a layer within one of ours (a fused pair's)
            ours.append(m)
            inside += (name + ".",)
    return ours[-1] if ours else None
