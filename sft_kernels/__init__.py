"""sft_kernels: fast CNN inference kernels for PyTorch.

Importing never fails because a compiled part is missing: `sft_kernels.backends.available()` lists the
backends that work here and `sft_kernels.backends.status()` says why any other is missing. Subpackages not
imported here (models, metrics, data, train, ...) load on first attribute access: `sft_kernels.models.SFTNet`.
"""
import importlib

from . import backends, ops

__version__ = "0.1.0"
__all__ = ["backends", "nn", "ops", "reference", "convert_", "revert_", "ConversionReport", "fuse_for_inference",
           "factorize_", "SVDConfig", "quantize_", "Int8Config", "prune_", "PruneConfig", "prepare_qat_",
           "convert_qat_", "to_separable_", "SeparableConfig", "export_onnx",
           "set_weight_check", "weight_check", "__version__"]

# Public subpackages and modules, imported on first use so `import sft_kernels` stays light.
_LAZY = ("nn", "reference", "models", "metrics", "data", "train", "transforms", "runtime", "testing", "tools",
         "export")


# Public functions of lazily imported modules: {name: module}.
_LAZY_NAMES = {"convert_": "transforms", "revert_": "transforms", "ConversionReport": "transforms",
               "fuse_for_inference": "transforms", "factorize_": "transforms", "SVDConfig": "transforms",
               "quantize_": "transforms", "Int8Config": "transforms",
               "prune_": "transforms", "PruneConfig": "transforms", "export_onnx": "export",
               "prepare_qat_": "transforms", "convert_qat_": "transforms",
               "to_separable_": "transforms", "SeparableConfig": "transforms",
               "set_weight_check": "runtime.weight_check",
               "weight_check": "runtime.weight_check"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'sft_kernels' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_NAMES))
