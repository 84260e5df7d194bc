"""The `cpu` backend of sft.sft_modulation: csrc/cpu/conv2d/sft_modulation.cpp (AVX-512 tiles; a portable loop on
other CPUs), and with bf16=True sft_modulation_bf16.cpp (AMX tiles)."""
import torch

from ...runtime import registry


def sft_modulation(x, mid_s, w_s, b_s, mid_t, w_t, b_t, bf16=False):
    registry.cpu_ext()
    op = torch.ops.sft_cpu.sft_modulation_bf16 if bf16 else torch.ops.sft_cpu.sft_modulation
    return op.default(x, mid_s, w_s, b_s, mid_t, w_t, b_t)
