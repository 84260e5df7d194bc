"""The tracer the transforms read models' structure with: torch.fx with our layers (and convs, batch norms) as
leaves."""
from __future__ import annotations

from torch import fx, nn

from ..nn import QuantConv2d, QuantLinear, SeparableConv2d


class ConvTracer(fx.Tracer):
    """Convs (float, transposed, int8, fused separable), Linears (float, converted, int8) and batch norms stay single
    call_module nodes (ours live outside torch.nn, and tracing into them would reach ops that take no proxies)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Linear, QuantConv2d, QuantLinear,
                              SeparableConv2d)) or \
            hasattr(m, "channels_last_output") or super().is_leaf_module(m, qualname)


def graph(model: nn.Module):
    """The model's fx graph: its own for a GraphModule, else traced with convs as leaves; None if untraceable."""
    if isinstance(model, fx.GraphModule):
        return model.graph
    try:
        return ConvTracer().trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure: the caller falls back
        return None
