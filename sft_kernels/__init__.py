"""sft_kernels: fast CNN inference kernels for PyTorch.

Importing never fails because a compiled part is missing: `sft_kernels.backends.available()` lists the
backends that work here and `sft_kernels.backends.status()` says why any other is missing.
"""
from . import backends, nn, ops, reference
from .convert import ConversionReport, convert_, revert_
from .fuse import fuse_for_inference
from .weight_check import set_weight_check, weight_check

__version__ = "0.1.0"
__all__ = ["backends", "nn", "ops", "reference", "convert_", "revert_", "ConversionReport", "fuse_for_inference",
           "set_weight_check", "weight_check", "__version__"]
