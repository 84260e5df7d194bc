"""convert_ / revert_: swap `nn.Conv2d` modules for `sft_kernels.nn.Conv2d` in place, on any model.

The swapped module shares the original's parameters, so state_dict keys and values are unchanged and
optimizers built before conversion keep working. Modules that cannot be handled (ConvTranspose2d,
non-zero padding modes, string padding) are left alone and listed in the returned report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from torch import nn

from . import backends
from .nn import Conv2d


@dataclass
class ConversionReport:
    converted: list = field(default_factory=list)  # qualified names of swapped modules
    skipped: list = field(default_factory=list)  # (name, reason)
    fused: list = field(default_factory=list)  # SFTNet modules switched to the fused forward

    def __str__(self):
        fused = f"; fused SFTNet forward: {self.fused}" if self.fused else ""
        lines = [f"converted {len(self.converted)} conv(s)" + fused]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def _trust(weight, trust: bool) -> None:
    """Converted modules' weights are checked by version counter in the default "auto" weight check (see
    sft_kernels.weight_check); a reverted module's are not."""
    if backends.cpu_ext() is not None:
        import torch

        torch.ops.sft_cpu.trust_weight(weight, trust)


def _why_not(module: nn.Module) -> Optional[str]:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "transposed convolution is not supported"
    if type(module).forward is not nn.Conv2d.forward:
        return f"{type(module).__name__} is a subclass of nn.Conv2d with its own forward"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros')"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r} (string padding)"
    return None


def convert_(model: nn.Module, backend: Optional[str] = None,
             filter_fn: Optional[Callable[[nn.Module, str], bool]] = None, fuse: bool = True) -> ConversionReport:
    """Swap every eligible `nn.Conv2d` in `model` (in place) for `sft_kernels.nn.Conv2d`.

    ``backend``: the backend the converted convs use (None = fastest for the input at each call); it is
    checked now, so asking for a backend that is missing here fails at once. ``filter_fn(module, name)``
    returning False leaves a module alone. ``fuse``: SFTNet ("pytorch" variant) modules also switch to their
    SFT-aware fused forward (batched SFT convs, epilogue-fused ReLU / residuals; same function).
    The converted convs' weights are then checked by their version counter, not by reading every value per call
    (`sft_kernels.weight_check`: edits through ``.data`` of a few values are not seen; ``set_weight_check("full")``
    restores the full check).
    Returns a report of converted and skipped modules.
    """
    if backend is not None:
        if backend not in backends.BACKENDS:
            raise ValueError(f"backend must be one of {backends.BACKENDS} or None, got {backend!r}")
        ok, why = backends.status()[backend]
        if not ok:
            raise backends.BackendUnavailableError(f"backend {backend!r} is not available here: {why}")
    report = ConversionReport()
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if isinstance(child, Conv2d):
                child.backend = backend
                _trust(child.weight, True)
                report.converted.append(name)
                continue
            if filter_fn is not None and not filter_fn(child, name):
                report.skipped.append((name, "excluded by filter_fn"))
                continue
            why = _why_not(child)
            if why:
                report.skipped.append((name, why))
                continue
            new = Conv2d.from_conv(child, backend)
            new._sft_original_class = type(child)
            _trust(new.weight, True)
            setattr(parent, child_name, new)
            report.converted.append(name)
    if fuse and filter_fn is None:
        from .models import SFTNet

        for name, m in model.named_modules():
            if isinstance(m, SFTNet) and m.variant == "pytorch":
                m.fused = True
                report.fused.append(name or "<model>")
    return report


def revert_(model: nn.Module) -> int:
    """Undo `convert_`: put plain `nn.Conv2d` modules back (same parameters). Returns how many."""
    from .models import SFTNet

    count = 0
    for m in model.modules():
        if isinstance(m, SFTNet):
            m.fused = False
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, Conv2d) and hasattr(child, "_sft_original_class"):
                orig = child._sft_original_class.__new__(child._sft_original_class)
                nn.Module.__init__(orig)
                state = {k: v for k, v in child.__dict__.items()
                         if k not in ("_parameters", "_buffers", "_modules", "activation", "negative_slope",
                                      "backend", "algorithm", "_sft_original_class")}
                orig.__dict__.update(state)
                orig._parameters, orig._buffers, orig._modules = child._parameters, child._buffers, child._modules
                _trust(child.weight, False)
                setattr(parent, child_name, orig)
                count += 1
    return count
