"""sft_kernels: fast CNN inference kernels for PyTorch.

Importing never fails because a compiled part is missing: `sft_kernels.backends.available()` lists the
backends that work here and `sft_kernels.backends.status()` says why any other is missing. Subpackages not
imported here (models, metrics, data, train, ...) load on first attribute access: `sft_kernels.models.SFTNet`.
"""
import importlib

from . import backends, nn, ops, reference
from .runtime.weight_check import set_weight_check, weight_check
from .transforms import ConversionReport, convert_, fuse_for_inference, revert_

__version__ = "0.1.0"
__all__ = ["backends", "nn", "ops", "reference", "convert_", "revert_", "ConversionReport", "fuse_for_inference",
           "set_weight_check", "weight_check", "__version__"]

# Public subpackages and modules, imported on first use so `import sft_kernels` stays light.
_LAZY = ("models", "metrics", "data", "train", "distill", "transforms", "runtime", "testing", "weights", "shapes",
         "benchmark", "bench_suite", "cli", "demo", "upscale", "report", "cpu_tune", "cuda_conv")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sft_kernels' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
