"""The module-swap helper every transform uses: walk a model's children, let a rule replace some, report the rest."""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Union

from torch import nn

from .report import Report

# rule(qualified name, module) -> a new module to put in its place, a string saying why it is left alone (reported
# as skipped), or None (not a candidate: not reported)
Rule = Callable[[str, nn.Module], Union[nn.Module, str, None]]


def set_module(root: nn.Module, qualname: str, new: nn.Module) -> None:
    """Put `new` where `root.get_submodule(qualname)` is."""
    parent, _, name = qualname.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def swap_modules(model: nn.Module, rule: Rule, report: Report, action: str = "converted") -> Report:
    """Apply `rule` to every submodule of `model` (not the model itself), in place; record each outcome in `report`."""
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            out = rule(name, child)
            if out is None:
                continue
            if isinstance(out, str):
                report.add(name, "skipped", out)
                continue
            if out is not child:
                setattr(parent, child_name, out)
            report.add(name, action)
    return report


def notify(model: nn.Module, transform: str, applied: bool) -> list:
    """Let modules that adapt themselves to a transform (they define `_sft_kernels_transformed(transform, applied)`,
    returning a description or None) do so; returns [(name, description)]. SFTNet switches to its fused forward
    this way, so the transforms need not know the models. Every transform ends here, so the hooks that hand the
    output back in the caller's layout are (re)installed here too (caller_layout)."""
    from . import caller_layout

    (caller_layout.install if applied else caller_layout.remove)(model)
    out = []
    for name, m in model.named_modules():
        hook = getattr(m, "_sft_kernels_transformed", None)
        if callable(hook):
            what: Optional[str] = hook(transform, applied)
            if what:
                out.append((name, what))
    return out


@contextlib.contextmanager
def unfused(model: nn.Module):
    """Models with a fused forward (a `fused` flag, SFTNet's) run their plain module-by-module forward inside."""
    saved = [(m, m.fused) for m in model.modules() if isinstance(getattr(type(m), "fused", None), bool)]
    try:
        for m, _ in saved:
            m.fused = False
        yield
    finally:
        for m, was in saved:
            m.fused = was
