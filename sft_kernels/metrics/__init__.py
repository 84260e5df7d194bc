"""Model and output metrics: parameters, size, MACs (complexity) and PSNR/SSIM (quality)."""
from .complexity import LayerMACs, conv_macs, count_params, layer_macs, model_size_bytes
from .quality import psnr, rgb_to_y, ssim

__all__ = ["count_params", "model_size_bytes", "conv_macs", "layer_macs", "LayerMACs",
           "psnr", "ssim", "rgb_to_y"]
