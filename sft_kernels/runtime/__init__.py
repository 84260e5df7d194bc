"""The dispatch core every op goes through (see dispatch.py), the backend registry, measured backend choice
(autotune), argument checks, packed-weight lifetimes (weight_pack), the cpu weight-cache check (weight_check) and
the Triton backend's loader. Nothing here imports an op."""
from . import autotune, checks, registry
from .dispatch import Op, dispatch

__all__ = ["Op", "dispatch", "autotune", "checks", "registry"]
