"""The `cpu` backend of sft.sft_layer: with bf16=True the whole layer in one op on AMX tiles
(csrc/cpu/conv2d/sft_modulation_bf16.cpp); in float32 the first convs as one fused conv (LeakyReLU in its store) and
sft.sft_modulation's tiles for the rest."""
import torch

from ...runtime import registry


def sft_layer(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, negative_slope, bf16):
    registry.cpu_ext()
    if bf16:
        return torch.ops.sft_cpu.sft_layer_bf16.default(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t,
                                                        negative_slope)
    cs = w0_s.shape[0]
    b0 = None if b0_s is None and b0_t is None else torch.cat([
        b if b is not None else w.new_zeros(w.shape[0]) for b, w in ((b0_s, w0_s), (b0_t, w0_t))])
    h = torch.ops.sft_cpu.conv2d.default(cond.contiguous(memory_format=torch.channels_last), torch.cat([w0_s, w0_t]),
                                         b0, [1, 1], [0, 0], [1, 1], 1, 2, negative_slope, None, 0, 1, None, None)
    return torch.ops.sft_cpu.sft_modulation.default(x, h[:, :cs], w1_s, b1_s, h[:, cs:], w1_t, b1_t)
