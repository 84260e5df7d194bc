// sft_cpu::qconv2d: int8 conv (uint8 activations × int8 weights, int32 sums) with the requantization fused into the
// store. The weights are packed once (qconv2d_pack) with their per-channel sums, which carry the input zero point.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace sft {

// w_q: int8 [K, C, R, S] (groups = 1). Returns {packed, wsum}: packed int8 panels [ceil(K/32)][R·S][C4/4][32][4]
// (C4 = C rounded up to 4; padded channels and output channels are zero) and wsum int32 [K] = Σ w_q[k].
std::vector<at::Tensor> qconv2d_pack(const at::Tensor& w_q);

// y = act((Σ (x_q − zx)·w_q) · x_scale·w_scale[k] + bias[k]) + residual; out_scale > 0: uint8
// clamp(round(y / out_scale) + out_zero_point, 0, 255), else float32. x_q: uint8 [N, C, H, W] (any layout); packed,
// wsum from qconv2d_pack of the [K, C, R, S] weight; w_scale, bias float32 [K]; residual float32 shaped like the
// output. Output channels_last.
at::Tensor qconv2d_cpu(const at::Tensor& x_q, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                       int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                       int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                       double out_scale, int64_t out_zero_point);

}  // namespace sft
