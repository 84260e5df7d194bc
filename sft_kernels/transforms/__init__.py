"""Model transforms, torchao style (an in-place verb that returns a report): `convert_` / `revert_` (our conv
modules), `fuse_for_inference` (conv + batch norm + activation + residual folding on a traced copy), `factorize_`
(spatial SVD of k×k convs), `to_separable_` (k×k convs to depthwise-separable pairs), `quantize_` (int8
post-training quantization with a PSNR budget), `prune_` (sparse or channel-pruned convs). They share one
module-swap helper (swap.py) and one report type (report.py)."""
from .convert import ConversionReport, convert_, revert_
from .factorize import SpatialSVDConv2d, SVDConfig, factorize_
from .fuse import fuse_for_inference
from .prune import PruneConfig, prune_
from .qat import QATConv2d, convert_qat_, prepare_qat_
from .quantize import Int8Config, quantize_
from .report import LayerRow, Report
from .to_separable import SeparableConfig, to_separable_

__all__ = ["convert_", "revert_", "ConversionReport", "fuse_for_inference", "factorize_", "SVDConfig",
           "SpatialSVDConv2d", "Report", "LayerRow", "quantize_", "Int8Config", "prepare_qat_",
           "convert_qat_", "QATConv2d", "prune_", "PruneConfig", "to_separable_", "SeparableConfig"]
