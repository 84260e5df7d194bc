"""convert_ / revert_: swap `nn.Conv2d` modules for `sft_kernels.nn.Conv2d` in place, on any model.

The swapped module shares the original's parameters, so state_dict keys and values are unchanged and
optimizers built before conversion keep working. `nn.ConvTranspose2d` becomes `sft_kernels.nn.ConvTranspose2d` (a
sub-pixel conv). Modules that cannot be handled (dilated transposed convs, subclasses with their own forward) are
left alone and listed in the returned report.

Layout policy: a converted model keeps its activations channels_last between converted convs, whatever the caller
passes, the way PyTorch runs a model moved to channels_last (see `sft_kernels.nn.Conv2d`); outputs equal eager's on
NCHW and channels_last input alike.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..nn import Conv2d, ConvTranspose2d, EagerConv2d, Linear
from ..nn.conv import sharing_parameters
from ..nn.folded_conv import FusedAway
from ..runtime import registry
from . import caller_layout, fold
from .precision import PRECISIONS, set_fp32_precision
from .report import Report
from .separable import fuse_separable
from .swap import notify, swap_modules


class ConversionReport(Report):
    """convert_'s report: `converted` (names), `skipped` ((name, reason)), `fused` (models switched to a fused
    forward)."""

    def __init__(self):
        super().__init__("convert_")

    @property
    def converted(self) -> list:
        return self.names("converted")

    @property
    def skipped(self) -> list:
        return [(r.name, r.detail) for r in self.rows if r.action == "skipped"]

    @property
    def fused(self) -> list:
        return [r.name or "<model>" for r in self.rows if r.action == "fused"]


def _trust(weight, trust: bool) -> None:
    """Converted modules' weights are checked by version counter in the default "auto" weight check (see
    sft_kernels.runtime.weight_check); a reverted module's are not."""
    if registry.cpu_ext() is not None:
        torch.ops.sft_cpu.trust_weight(weight, trust)


def _why_not(module: nn.Module) -> Optional[str]:
    if isinstance(module, nn.ConvTranspose2d):
        if type(module).forward is not nn.ConvTranspose2d.forward:
            return f"{type(module).__name__} is a subclass of nn.ConvTranspose2d with its own forward"
        return None if module.dilation == (1, 1) else "transposed convolution with dilation is not supported"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "transposed convolution is supported in 2-D only"
    if type(module).forward is not nn.Conv2d.forward:
        return f"{type(module).__name__} is a subclass of nn.Conv2d with its own forward"
    return None


def convert_(model: nn.Module, backend: Optional[str] = None,
             filter_fn: Optional[Callable[[nn.Module, str], bool]] = None, fuse: bool = True,
             fp32_precision: str = "ieee") -> ConversionReport:
    """Swap every eligible `nn.Conv2d` in `model` (in place) for `sft_kernels.nn.Conv2d`, and every `nn.Linear` for
    `sft_kernels.nn.Linear` (many rows, as over ConvNeXt's NHWC maps, run on our 1×1 conv kernel; few run F.linear).

    ``backend``: the backend the converted convs use (None = fastest for the input at each call); it is
    checked now, so asking for a backend that is missing here fails at once. ``filter_fn(module, name)``
    returning False leaves a module alone. ``fuse``: a depthwise conv, an optional ReLU / LeakyReLU / ReLU6 and a
    1×1 conv in an nn.Sequential run as one fused separable conv (state_dict keys unchanged), and models that have a
    fused forward for converted convs (SFTNet's "pytorch" variant: batched SFT convs, epilogue-fused ReLU /
    residuals; same function) switch to it; in other models a conv followed by a BatchNorm2d and / or a ReLU /
    LeakyReLU / ReLU6 module (nothing else reading the conv's output, no forward hook on any of them) becomes a
    `FoldedConv2d` that runs them as one conv in eval mode and apart in train mode or when gradients are needed
    (state_dict keys unchanged; revert_ puts the modules back); an activation module after a Linear (nn.GELU, ...)
    becomes that Linear's epilogue.
    ``fp32_precision="bf16"`` (as PyTorch's ``torch.backends.mkldnn.conv.fp32_precision``): on CPUs with AMX-BF16
    or AVX512-BF16 the converted convs compute in bfloat16 (input and weight rounded, float32 sums; ops.conv2d's
    algorithm="bf16"), except memory-bound, grouped and few-channel ones; on AVX512-BF16 without AMX the 3×3
    stride-1 ones run bf16, bf16 Winograd or float32, whichever measures fastest per input shape
    (transforms/precision.py); ``"bf16_direct"``: the same without bf16 Winograd (oneDNN's and OpenVINO's bf16
    numerics); tensors and parameters stay float32. The report has a "bf16", "bf16_winograd", "measured" or "float32"
    row per conv. Elsewhere it warns and the model stays float32.
    The converted convs' weights are then checked by their version counter, not by reading every value per call
    (`sft_kernels.runtime.weight_check`: edits through ``.data`` of a few values are not seen;
    ``set_weight_check("full")`` restores the full check).
    Returns a report of converted, skipped and fused modules.
    """
    if backend is not None:
        if backend not in registry.BACKENDS:
            raise ValueError(f"backend must be one of {registry.BACKENDS} or None, got {backend!r}")
        ok, why = registry.status()[backend]
        if not ok:
            raise registry.BackendUnavailableError(f"backend {backend!r} is not available here: {why}")

    def rule(name, child):
        if type(child) is Linear:
            child.backend = backend
            return child
        if type(child) is nn.Linear:  # (subclasses, such as nn.MultiheadAttention's out_proj, are left alone)
            if filter_fn is not None and not filter_fn(child, name):
                return "excluded by filter_fn"
            new = Linear.from_linear(child, backend)
            new._sft_original_class = nn.Linear
            return new
        if not isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            return None
        if isinstance(child, (Conv2d, ConvTranspose2d)):
            child.backend = backend
            _trust(child.weight, True)
            return child
        if filter_fn is not None and not filter_fn(child, name):
            return "excluded by filter_fn"
        why = _why_not(child)
        if why:
            return why
        if isinstance(child, nn.ConvTranspose2d):  # a sub-pixel conv (nn/conv_transpose.py)
            new = ConvTranspose2d.from_conv(child, backend)
            new._sft_original_class = type(child)
            return new
        new = Conv2d.from_conv(child, backend)
        if isinstance(child, EagerConv2d):  # a reverted conv with its epilogue: the epilogue comes along
            new.activation, new.negative_slope = child.activation, child.negative_slope
        new._sft_original_class = type(child)
        _trust(new.weight, True)
        return new

    if fp32_precision not in PRECISIONS:
        raise ValueError(f"fp32_precision must be one of {PRECISIONS}, got {fp32_precision!r}")
    report = swap_modules(model, rule, ConversionReport())
    if fuse and filter_fn is None:
        fuse_separable(model, report)
        if not any(callable(getattr(m, "_sft_kernels_transformed", None)) for m in model.modules()):
            # models that fuse themselves (SFTNet) are left to do so; elsewhere conv → batch norm → activation
            for conv, bn, act in fold.fold_live_(model, fold.plan(model)):
                kind = "linear" if isinstance(model.get_submodule(conv), Linear) else "conv"
                report.add(conv, "fused", " + ".join([kind] + [m for m in (bn and "batch norm", act and
                           type(model.get_submodule(act).__dict__["_sft_replaced"]).__name__) if m])
                           + " run as one conv in eval mode (live fold: train mode and gradients run them apart)")
        for name, what in notify(model, "convert_", True):
            report.add(name, "fused", what)
    else:
        caller_layout.install(model)
    set_fp32_precision(model, fp32_precision, report)
    return report


def _original(child: nn.Module, ours: tuple) -> nn.Module:
    """The module of `child`'s original class holding its parameters and attributes (less the `ours` ones)."""
    _trust(child.weight, False)
    return sharing_parameters(child._sft_original_class, child, lambda k: k in ours)


def revert_(model: nn.Module) -> int:
    """Undo `convert_`: put plain `nn.Conv2d` modules back (same parameters). Returns how many. A converted conv that
    carries an activation or takes a residual (`fuse_for_inference` folded them in) becomes an `EagerConv2d`, which
    computes the same in plain PyTorch."""
    notify(model, "convert_", False)
    fold.unfold_live_(model)  # folded convs: converted convs again, their batch norms and activations back
    graph = getattr(model, "graph", None)
    with_residual = {n.target for n in graph.nodes if n.op == "call_module" and n.kwargs} if graph is not None \
        else set()

    def rule(name, child):
        if isinstance(child, FusedAway):  # a module a separable pair had taken over
            child = child.__dict__["_sft_replaced"].train(child.training)
            if not (isinstance(child, Conv2d) and hasattr(child, "_sft_original_class")):
                return child
        if isinstance(child, ConvTranspose2d) and hasattr(child, "_sft_original_class"):
            return _original(child, ("backend", "_sub", "_sft_original_class"))
        if not (isinstance(child, Conv2d) and hasattr(child, "_sft_original_class")):
            return None
        if child.activation is not None or name in with_residual or \
                issubclass(child._sft_original_class, EagerConv2d):
            _trust(child.weight, False)
            return EagerConv2d.from_conv(child)
        return _original(child, ("activation", "negative_slope", "backend", "algorithm", "_fast",
                                 "_sft_original_class", "_sft_pw", "_sft_mid", "_sft_slope"))

    rows = swap_modules(model, rule, Report("revert_"), "reverted").rows
    # the count is of convs (a separable pair's activation comes back too)
    count = sum(isinstance(model.get_submodule(r.name), nn.modules.conv._ConvNd) for r in rows)
    caller_layout.install(model)  # for layers of ours that revert_ leaves (int8, pruned)
    return count
