"""A converted nn.Linear: the rows of its input as the pixels of one channels_last image, run by ops.conv2d's 1×1
conv, with an optional epilogue activation (convert_ folds a following nn.GELU / ReLU-like module into it).

Where this pays: Linear layers over feature maps (ConvNeXt's MLPs on NHWC maps, 3136 rows at 56²) run a GEMM of
thousands of rows, and an activation module after them is a pass over a map of 4× the channels. Few rows (a
classifier's head) leave both bound by reading the weight, where PyTorch's call is cheaper: those run F.linear.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops.conv2d import bound as conv2d_bound
from ..ops.conv2d.reference import epilogue
from ..runtime import registry
from .conv import BoundCall, _fast_key, sharing_parameters

# Below this many rows F.linear runs (a classifier's head: both read the weight, PyTorch's call costs ~8 µs less).
# Alone, at 49-196 rows, ours measured 3-5 % slower than MKL, alike in a model (ConvNeXt-T's 196 × 1536 → 384:
# 1.62 against 1.67 ms, 1 thread) and faster with an activation folded (384 → 1536 + GELU: 1.80 against 2.24 ms for
# addmm, its bias copy and the GELU pass); at thousands of rows faster alone (3136 × 96 → 384: 1.54 against 1.82).
MIN_ROWS = 32
LINEAR_ATTRS = ("activation", "negative_slope", "backend", "_w4", "_fast", "_sft_original_class")  # (nn.Linear: no)


@functools.lru_cache(maxsize=256)
def image_shape(m: int) -> tuple:
    """(P, Q) with P·Q = m rows and P the largest divisor of m up to √m: rows of pixels for the threads to share
    (one row of 3136 pixels ran 1.35x slower at 2 threads than two of 1568 in the int8 kernel)."""
    p = max(d for d in range(1, math.isqrt(m) + 1) if m % d == 0)
    return p, m // p


def rows_as_image(x: torch.Tensor) -> torch.Tensor:
    """The (M, C) rows as one channels_last image (1, C, P, Q), a view of a contiguous copy."""
    x = x.contiguous()  # (the rows of a permuted map may be a transposed view)
    p, q = image_shape(x.shape[0])
    return x.view(1, p, q, x.shape[1]).permute(0, 3, 1, 2)


class Linear(BoundCall, nn.Linear):
    """nn.Linear whose inference on many rows (≥ MIN_ROWS, float32, CPU) runs on our 1×1 conv kernel, with
    ``activation`` (a name of ops.conv2d's: "gelu", "relu", "silu", ...) applied in its store. Same parameters and
    state_dict keys as nn.Linear; gradients, autocast, tracing (ONNX) and torch.compile run F.linear and the
    activation in PyTorch, which compute the same."""

    def __init__(self, *args, activation: Optional[str] = None, negative_slope: float = 0.01,
                 backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation, self.negative_slope, self.backend = activation, negative_slope, backend
        self._w4 = self._fast = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, backend: Optional[str] = None) -> "Linear":
        """A Linear sharing `linear`'s parameters (no copy)."""
        new = sharing_parameters(cls, linear, lambda k: False)
        new.activation, new.negative_slope, new.backend, new._w4, new._fast = None, 0.01, backend, None, None
        return new

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._ours(input):
            return epilogue(F.linear(input, self.weight, self.bias), self.activation, self.negative_slope)
        lead, x, w4 = input.shape[:-1], rows_as_image(input.reshape(-1, self.in_features)), self._weight4()
        b, key = self.bias, _fast_key(x, None)  # (the kernel's call kept bound as the converted convs keep theirs)
        fn = self.bound_for(key)
        if fn is not None:
            y = fn(x, w4, b, None)
        else:
            y = ops.conv2d(x, w4, b, 1, 0, 1, 1, activation=self.activation, negative_slope=self.negative_slope,
                           backend=self.backend)
            self.keep_bound(key, conv2d_bound(x, w4, b, 1, 0, 1, 1, self.activation, self.negative_slope, None,
                                              self.backend, None))
        return y.permute(0, 2, 3, 1).reshape(*lead, self.out_features)

    def _ours(self, x: torch.Tensor) -> bool:
        """Whether this call runs on our cpu kernel (built, chosen or left to us) rather than F.linear."""
        w = self.weight
        # (is_compiling first: torch.compile would trace into registry.cpu_ext's import and break the graph)
        return (not torch.compiler.is_compiling() and not torch.jit.is_tracing()
                and type(x) is torch.Tensor and x.is_cpu and w.is_cpu and x.dtype == w.dtype == torch.float32
                and self.backend in (None, "cpu") and registry.cpu_ext() is not None and w.is_contiguous()
                and x.dim() >= 2 and x.shape[-1] == self.in_features and x.numel() >= MIN_ROWS * self.in_features
                and not torch.is_autocast_enabled("cpu")
                and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                                      or (self.bias is not None and self.bias.requires_grad))))

    def _weight4(self) -> torch.Tensor:
        """The weight as the conv's (K, C, 1, 1), one view kept per weight tensor: the cpu backend caches its packed
        panels per tensor and checks a trusted one by version counter, which the view shares with the weight."""
        w, hit = self.weight, self.__dict__.get("_w4")
        if hit is not None and hit[0] is w and hit[1].data_ptr() == w.data_ptr():
            return hit[1]
        w4 = w.detach().view(self.out_features, self.in_features, 1, 1)
        if registry.cpu_ext() is not None:
            torch.ops.sft_cpu.trust_weight(w4, True)
        self.__dict__["_w4"] = (w, w4)
        return w4

    def _apply(self, fn, recurse=True):
        self.__dict__["_w4"] = None
        return super()._apply(fn, recurse)

    def __getstate__(self):
        return {**super().__getstate__(), "_w4": None}

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.activation:
            s += f", activation={self.activation!r}"
        return s + f", backend={self.backend!r}"
