"""A converted conv that also runs the batch norm and activation modules after it: `convert_` folds
conv → BatchNorm2d → ReLU-like chains into one kernel call in inference, and keeps the model trainable.

Unlike `fuse_for_inference` (a traced copy with the batch norm baked into the weights), the model keeps its modules'
parameters, buffers and state_dict keys: the batch norm's and activation's places hold `FusedAway` modules sharing
their parameters and buffers. The fold is live:
- in eval mode with nothing needing gradients, the conv runs with the batch norm folded into its weight and bias
  (recomputed whenever the conv's or the batch norm's tensors change: their version counters and data pointers)
  and the activation in its epilogue: one kernel, no pass over the map for each;
- in train mode (batch statistics, running-statistics updates), when gradients are needed, under tracing
  (ONNX export) or torch.compile, it computes conv, batch norm and activation one after the other, as the original
  modules did.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..ops.conv2d.reference import epilogue
from ..runtime import registry
from .conv import Conv2d, _eager_forward, activation_of


class FusedAway(nn.Module):
    """A module whose work a neighbouring conv does: keeps its parameters and buffers (so its state_dict keys, and
    `.to()` / `.half()` reach them) and passes its input through."""

    def __init__(self, original: nn.Module, into: str = "the depthwise conv before it"):
        super().__init__()
        self._parameters, self._buffers = original._parameters, original._buffers
        self.__dict__["_sft_replaced"] = original
        self.__dict__["_sft_into"] = into
        self.training = original.training

    def forward(self, x):
        return x

    def extra_repr(self) -> str:
        return f"fused into {self.__dict__['_sft_into']} ({type(self.__dict__['_sft_replaced']).__name__})"


FOLD_ATTRS = ("_sft_bn", "_sft_act", "_sft_folded")  # FoldedConv2d's own attributes


def _stamp(t: Optional[torch.Tensor]):
    return None if t is None else (t._version, t.data_ptr())


class FoldedConv2d(Conv2d):
    """A converted conv followed by a BatchNorm2d and / or a ReLU / LeakyReLU / ReLU6 module, which it runs itself (see
    the module docstring). Built by transforms/fold.py's `fold_live_`."""

    @classmethod
    def fold(cls, conv: Conv2d, bn: Optional[FusedAway], act: Optional[nn.Module]) -> "FoldedConv2d":
        """`bn`: the FusedAway standing in the batch norm's place; its train / eval mode is the batch norm's."""
        new = cls.from_conv(conv, conv.backend)
        new._sft_original_class = conv._sft_original_class
        new.__dict__["_sft_bn"] = bn
        new.__dict__["_sft_act"] = activation_of(act) if act is not None else None
        new.__dict__["_sft_folded"] = None
        return new

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        place, act = self.__dict__["_sft_bn"], self.__dict__["_sft_act"]
        name, slope = act if act is not None else (None, 0.01)
        if place is None:  # an activation alone: the epilogue is exact in training too
            if torch.jit.is_tracing():
                return epilogue(_eager_forward(self, input, None), name, slope, residual)
            return self._run(input, residual, self.weight, self.bias, name, slope)
        bn = place.__dict__["_sft_replaced"]
        # the batch norm's mode is its place's (model.train() / .eval() reach it), not this conv's: a model may hold
        # modules in both modes
        if place.training or torch.jit.is_tracing() or torch.compiler.is_compiling() or self._needs_grad(input, bn):
            bn.training = place.training
            y = _eager_forward(self, input, None) if torch.jit.is_tracing() else \
                self._run(input, None, self.weight, self.bias, None, 0.01, cache=False)
            return epilogue(bn(y), name, slope, residual)
        w, b = self._folded(bn)
        return self._run(input, residual, w, b, name, slope)

    def _needs_grad(self, x: torch.Tensor, bn: nn.BatchNorm2d) -> bool:
        return torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                               for t in (x, self.weight, self.bias, bn.weight, bn.bias))

    def _folded(self, bn: nn.BatchNorm2d) -> tuple:
        """(weight, bias) with the batch norm's eval statistics folded in, made again whenever a tensor they come
        from changes."""
        tensors = (self.weight, self.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        try:
            key = tuple(_stamp(t) for t in tensors) + (bn.eps,)
        except RuntimeError:  # inference tensors have no version counter: fold on every call
            key = None
        hit = self.__dict__["_sft_folded"]
        if key is not None and hit is not None and hit[0] == key:
            return hit[1], hit[2]
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            w = self.weight * scale.to(self.weight.dtype).view(-1, 1, 1, 1)
            b = -bn.running_mean * scale if self.bias is None else (self.bias - bn.running_mean) * scale
            b = (b if bn.bias is None else b + bn.bias).to(self.weight.dtype)
        if key is None:
            return w, b
        if registry.cpu_ext() is not None and w.is_cpu:  # never changed in place: checked by version (weight_check)
            torch.ops.sft_cpu.trust_weight(w, True)
        self.__dict__["_sft_folded"] = (key, w, b)
        return w, b

    def extra_repr(self) -> str:
        parts = ["batch norm" if self.__dict__["_sft_bn"] is not None else None,
                 self.__dict__["_sft_act"][0] if self.__dict__["_sft_act"] is not None else None]
        return super().extra_repr() + ", runs " + " + ".join(p for p in parts if p)
