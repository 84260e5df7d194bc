"""Whole-model inference replayed from one CUDA graph, so small inputs are not bound by kernel-launch gaps.

    run = compile_for_inference(model, example)   # warm-up (autotune, JIT, weight packing), then capture
    y = run(x)                                     # copy x into the static input, replay, return the output

The graph is fixed to the example's shape, dtype, device and memory format; another shape needs another
call. The returned tensor is the graph's static output buffer: the next call overwrites it (clone to keep).
Weights are frozen at capture, as packed for our kernels then (the packs live as long as this object): after
changing weights, capture again.
"""
from __future__ import annotations

import torch
from torch import nn

from ..runtime import weight_pack


class CUDAGraphModel:
    """A captured forward of `model` on inputs like `example` (see the module docstring)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, warmup: int = 3):
        if not isinstance(example, torch.Tensor) or example.device.type != "cuda":
            raise ValueError("compile_for_inference captures a CUDA graph: pass a CUDA example input "
                             "(on the CPU, call the model directly or use torch.compile)")
        self.model = model.eval()
        self.static_in = example.detach().clone()  # clone keeps the memory format
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():  # warm-up runs outside the capture: autotune timing,
            for _ in range(max(1, warmup)):                # Triton JIT, cuDNN algorithm search, weight packing
                self.model(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with weight_pack.hold_for_graph() as self._packs, torch.cuda.graph(self.graph), torch.no_grad():
            self.static_out = self.model(self.static_in)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = self.static_in
        if x.shape != s.shape or x.dtype != s.dtype or x.device != s.device:
            raise ValueError(f"this graph was captured for shape {tuple(s.shape)} {s.dtype} on {s.device}, got "
                             f"{tuple(x.shape)} {x.dtype} on {x.device}; call compile_for_inference for that shape")
        s.copy_(x)
        self.graph.replay()
        return self.static_out


def compile_for_inference(model: nn.Module, example: torch.Tensor, warmup: int = 3) -> CUDAGraphModel:
    """Capture `model`'s forward on `example` into a CUDA graph; returns a callable that replays it."""
    return CUDAGraphModel(model, example, warmup)
