// sft_cpu::separable_conv2d: a depthwise k×k conv, then a 1×1 conv, in one pass with no intermediate in memory.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft {

// out = act(pw(mid_act(dw(x) + dw_bias)) + pw_bias) + residual, channels_last out. x: N×C×H×W float32 (any layout);
// dw_weight: C·m×1×R×S (depthwise with channel multiplier m); pw_weight: K×C·m×1×1; biases and residual optional
// (undefined); residual shaped like out. Activations: 0 none, 1 relu, 2 leaky_relu (slope). pixel_shuffle = r > 1:
// pw_weight's (and pw_bias's) output channels come in sub-pixel order (channel (i·r + j)·K/r² + c is PyTorch's
// c·r² + i·r + j) and out is PixelShuffle(r) of the conv, [N, K/r², P·r, Q·r], plus a residual shaped like it; the
// store writes each output at its shuffled place when every NR-channel panel lies in one sub-pixel, else the
// conv's output is shuffled after.
at::Tensor separable_conv2d_cpu(const at::Tensor& x, const at::Tensor& dw_weight,
                                const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                const c10::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t mid_activation,
                                int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                                int64_t pixel_shuffle = 1);

// MobileNetV2's inverted residual in one pass: out = act(pw(mid_act(dw(ex_act(ex(x) + ex_bias)) + dw_bias)) +
// pw_bias) + residual, channels_last out, the expanded map (E channels at x's resolution) never in memory.
// ex_weight: E×C×1×1; dw_weight: E·m×1×R×S; pw_weight: K×E·m×1×1; biases and residual optional.
at::Tensor inverted_residual_cpu(const at::Tensor& x, const at::Tensor& ex_weight,
                                 const c10::optional<at::Tensor>& ex_bias, int64_t ex_activation,
                                 const at::Tensor& dw_weight, const c10::optional<at::Tensor>& dw_bias,
                                 const at::Tensor& pw_weight, const c10::optional<at::Tensor>& pw_bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t mid_activation, int64_t activation, double negative_slope,
                                 const c10::optional<at::Tensor>& residual);

}  // namespace sft
