"""Images for tests and benchmarks, and the bicubic x4 degradation SR models are trained on."""
from .images import bicubic_downscale, cubic_kernel, imresize, list_images, load_image, mod_crop

__all__ = ["load_image", "list_images", "bicubic_downscale", "imresize", "mod_crop", "cubic_kernel"]
