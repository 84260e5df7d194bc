"""The `cpu` backend of sft.sft_modulation: csrc/cpu/conv2d/sft_modulation.cpp (AVX-512 tiles; a portable loop on
other CPUs)."""
import torch

from ...runtime import registry


def sft_modulation(x, mid_s, w_s, b_s, mid_t, w_t, b_t):
    registry.cpu_ext()
    return torch.ops.sft_cpu.sft_modulation.default(x, mid_s, w_s, b_s, mid_t, w_t, b_t)
