"""SFT super-resolution network (SFTGAN's generator, both public variants) and condition priors."""
from .sftnet import (CLASS_NAMES, NUM_CLASSES, VARIANTS, CondNet, ResBlockSFT, SFTLayer, SFTNet,
                     background_seg)
from .cuda_graph import CUDAGraphModel, compile_for_inference

__all__ = ["SFTNet", "CondNet", "SFTLayer", "ResBlockSFT", "background_seg",
           "CLASS_NAMES", "NUM_CLASSES", "VARIANTS", "compile_for_inference", "CUDAGraphModel"]
