"""Quantization-aware training: `prepare_qat_` puts fake quantization (straight-through estimator) around every
conv quantize_ would quantize, `convert_qat_` turns the trained model into the int8 one.

    sft_kernels.prepare_qat_(model, Int8Config(), calibration=lr_batches)   # activation ranges from these
    ... train (e.g. `sft-kernels train --qat`: distillation from the float teacher) ...
    sft_kernels.convert_qat_(model)                                        # QuantConv2d convs, as quantize_ makes

Activations: per-tensor affine uint8, their ranges calibrated once at prepare time with the config's observer and
then fixed (the weights learn to live on that grid); weights: per-output-channel symmetric int8 recomputed from the
current weight at every step. Gradients pass straight through rounding, and are zero where a value was clipped
(torch.fake_quantize_*). The model trains in float; only convert_qat_ makes int8 kernels run.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .fold import unfold_live_
from ..nn.quantized import QuantConv2d, QuantLinear
from ..ops.conv2d.reference import epilogue
from .quantize import Int8Config, _inputs, calibrate
from .report import Report
from .swap import notify, swap_modules


class QATConv2d(nn.Module):
    """A conv (or an nn.Linear head, as quantize_ quantizes) trained through int8 fake quantization; `conv` holds the
    float parameters (state_dict keys gain a ".conv" level)."""

    def __init__(self, conv: nn.Conv2d, input_scale: float, input_zero_point: int):
        super().__init__()
        self.conv = conv
        self.input_scale, self.input_zero_point = float(input_scale), int(input_zero_point)

    def fake_weight(self) -> torch.Tensor:
        w = self.conv.weight
        scale = (w.detach().abs().flatten(1).amax(dim=1) / 127).clamp_min(1e-12).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        c = self.conv
        xq = torch.fake_quantize_per_tensor_affine(x.float(), self.input_scale, self.input_zero_point, 0, 255)
        if isinstance(c, nn.Linear):
            return F.linear(xq, self.fake_weight(), c.bias)
        y = nn.Conv2d._conv_forward(c, xq, self.fake_weight(), c.bias)  # its padding mode and string padding too
        return epilogue(y, getattr(c, "activation", None), getattr(c, "negative_slope", 0.01), residual)

    def extra_repr(self) -> str:
        return f"input_scale={self.input_scale:.4g}, input_zero_point={self.input_zero_point}"


def prepare_qat_(model: nn.Module, config: Optional[Int8Config] = None, calibration: Iterable = ()) -> Report:
    """Wrap every eligible conv of `model` (in place) in a QATConv2d, its input range calibrated on `calibration`
    with config.observer. Returns the per-layer report."""
    config = config or Int8Config()
    batches = _inputs(calibration)
    unfold_live_(model)  # convert_'s live batch-norm folds: QAT trains the convs and batch norms as they are
    was = model.training
    model.eval()
    observers, skipped, _ = calibrate(model, batches, config)
    model.train(was)
    report = Report("prepare_qat_")

    def rule(name, child):
        if name in skipped:
            return skipped[name]
        if name not in observers:
            return None
        if not observers[name].seen:
            return "never called by the calibration forward: kept float"
        if isinstance(child, nn.ConvTranspose2d):  # (quantize_ makes these int8; QAT does not train them yet)
            return "transposed conv: kept float by QAT"
        scale, zp = observers[name].qparams()
        return QATConv2d(child, scale, zp)

    swap_modules(model, rule, report, action="fake-quantized")
    for name, what in notify(model, "prepare_qat_", True):
        report.add(name, "note", what)
    return report


def convert_qat_(model: nn.Module, backend: Optional[str] = None) -> Report:
    """Replace every QATConv2d (in place) by the int8 QuantConv2d (QuantLinear) of its trained weights and calibrated
    range."""
    report = Report("convert_qat_")

    def rule(name, child):
        if not isinstance(child, QATConv2d):
            return None
        cls = QuantLinear if isinstance(child.conv, nn.Linear) else QuantConv2d
        return cls.from_float(child.conv, child.input_scale, child.input_zero_point, backend=backend)

    swap_modules(model, rule, report, action="quantized")
    for name, what in notify(model, "convert_qat_", True):
        report.add(name, "note", what)
    return report
