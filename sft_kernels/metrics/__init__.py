"""Model and output metrics: parameters, size, MACs (complexity), PSNR/SSIM (quality) and latency, peak
memory, energy and per-layer time (runtime)."""
from .complexity import LayerMACs, conv_macs, count_params, layer_macs, model_size_bytes
from .quality import psnr, rgb_to_y, ssim
from .runtime import LayerTime, energy, latency, layer_times, peak_memory

__all__ = ["count_params", "model_size_bytes", "conv_macs", "layer_macs", "LayerMACs",
           "psnr", "ssim", "rgb_to_y",
           "latency", "peak_memory", "energy", "layer_times", "LayerTime"]
