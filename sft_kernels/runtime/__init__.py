"""The dispatch core every op goes through (see dispatch.py), the backend registry, measured backend choice
(autotune), argument checks, the layout policy's NCHW -> channels_last change (layout), packed-weight lifetimes
(weight_pack), the cpu weight-cache check (weight_check) and the Triton backend's loader. Nothing here imports an
op."""
from . import autotune, checks, layout, registry
from .dispatch import Op, dispatch

__all__ = ["Op", "dispatch", "autotune", "checks", "layout", "registry"]
