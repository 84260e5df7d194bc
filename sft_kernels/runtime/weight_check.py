"""How the cpu backend notices that a weight changed, so its packed / transformed copies stay correct.

The cpu backend derives packed GEMM panels or Winograd-transformed filters from each conv weight once and
caches them. Before each use it checks that the weight is still the one they were made from, in one of two
ways:

- by content: a vectorized pass over every value. Any change is seen, however it is made (in-place ops,
  ``.data``, NumPy views, a new tensor at a reused address), but the pass reads all the weights on every call:
  about 11 % of a converted ResNet-50's forward at batch 1, where each layer's weights come from DRAM.
- by version: the tensor's version counter plus 64 sampled values. Every in-place op, ``copy_``, optimizer step,
  ``load_state_dict`` and ``module.to(...)`` is seen, and the samples catch whole-tensor rewrites through
  ``.data`` (``.data.normal_()``, ``.data.copy_(other)``); an edit of a few values through ``.data`` or a NumPy
  view is **not** seen. The contract of ``torch.compile`` freezing or IPEX weight prepacking, at almost no cost.
  Inference tensors (no version counter) are always checked by content.

Modes (process-wide): ``"auto"`` (default) checks the weights of modules made by ``sft_kernels.convert_`` by
version and every other tensor (the functional ``sft_kernels.ops.conv2d``) by content; ``"version"`` and
``"full"`` use one way for everything. Set it with ``set_weight_check(mode)``, for a block with
``with weight_check(mode):``, or for a process with ``SFT_KERNELS_WEIGHT_CHECK=<mode>``. A weight swapped in
after conversion (``conv.weight = nn.Parameter(...)``) is checked by content until converted again.
"""
from __future__ import annotations

import contextlib

from . import registry
from .registry import WEIGHT_CHECK_MODES as MODES
from .registry import weight_check_mode_index as mode_index


def set_weight_check(mode: str) -> str:
    """Switch the check for every later call; returns the previous mode."""
    index = mode_index(mode)
    if registry.cpu_ext() is None:
        return "auto"  # nothing is cached without the extension
    import torch

    return MODES[torch.ops.sft_cpu.set_weight_check(index)]


@contextlib.contextmanager
def weight_check(mode: str):
    """``with weight_check("full"): ...`` runs the block in that mode and restores the previous one."""
    before = set_weight_check(mode)
    try:
        yield
    finally:
        set_weight_check(before)
