import torch
import torch.nn.functional as F


def sft_layer(x, cond, w0_s, b0_s, w0_t, b0_t, w1_s, b1_s, w1_t, b1_t, negative_slope, bf16=False) -> torch.Tensor:
    """x·(scale + 1) + shift, scale = conv1x1(leaky_relu(conv1x1(cond; w0_s, b0_s)); w1_s, b1_s), shift likewise.
    bf16: every conv's input and weight rounded to bfloat16 first (the mid maps after their bias and activation),
    sums, biases, activation and modulation in x's dtype."""
    r = (lambda t: t.to(torch.bfloat16).to(t.dtype)) if bf16 else (lambda t: t)
    mid_s = F.leaky_relu(F.conv2d(r(cond), r(w0_s), b0_s), negative_slope)
    mid_t = F.leaky_relu(F.conv2d(r(cond), r(w0_t), b0_t), negative_slope)
    return x * (F.conv2d(r(mid_s), r(w1_s), b1_s) + 1) + F.conv2d(r(mid_t), r(w1_t), b1_t)
