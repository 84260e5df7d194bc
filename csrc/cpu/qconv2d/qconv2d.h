// sft_cpu::qconv2d: int8 conv (uint8 activations × int8 weights, int32 sums) with the requantization fused into the
// store. The weights are packed once (qconv2d_pack) with their per-channel sums, which carry the input zero point.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace sft {

// The integer kernel this process runs: "amx", "vnni", "avxvnni", "avx2" or "generic" (the best this CPU and OS
// allow, or the one SFT_KERNELS_INT8 names; SFT_KERNELS_ISA=avx2|generic also selects the portable loop).
std::string qconv2d_kernel();

// The channel rounding the packing (and the padded input) uses for C input channels: 64 where the AMX block runs
// (C >= 16 with the amx kernel), else 4.
int64_t qconv2d_channel_align(int64_t C);

// Elements of qconv2d_pack's panels for a [K, C, R, S] weight (few-channel convs on AMX pack their taps as channels).
int64_t qconv2d_packed_numel(int64_t K, int64_t C, int64_t R, int64_t S);

// w_q: int8 [K, C, R, S] (groups = 1). Returns {packed, wsum}: packed int8 panels [ceil(K/32)][R·S][Cp/4][32][4]
// (Cp = C rounded up to qconv2d_channel_align(C); padded channels and output channels are zero) and wsum int32
// [ceil(K/32)·32] = Σ w_q[k].
std::vector<at::Tensor> qconv2d_pack(const at::Tensor& w_q);

// y = act((Σ (x_q − zx)·w_q) · x_scale·w_scale[k] + bias[k]) + residual; out_scale > 0: uint8
// clamp(round(y / out_scale) + out_zero_point, 0, 255) (out_dtype int8: clamped to [-128, 127], zero point in that
// range), else float32 (out_dtype bfloat16: rounded to nearest even), all in the store. x: uint8 [N, C, H, W], or
// float32 quantized on the way in (clamp(round(x · (1/x_scale)) + zx, 0, 255)), any layout; packed, wsum from
// qconv2d_pack of the [K, C, R, S] weight; w_scale, bias float32 [K]; residual float32 shaped like the output, or with
// res_scale > 0 uint8, added as (residual − res_zero_point)·res_scale. mod_scale / mod_shift (float input only,
// shaped like it): the input is x·(mod_scale + 1) + mod_shift, an SFT modulation applied as the input is quantized.
// pixel_shuffle = r > 1: the output channels are in sub-pixel order (channel (i·r + j)·K/r² + c is PyTorch's
// c·r² + i·r + j) and the result is PixelShuffle(r) of the conv, [N, K/r², P·r, Q·r] (a residual, shaped like the
// conv's own output, is added before the shuffle; sft.qconv2d takes it shaped like the shuffled output and
// unshuffles it for this kernel).
// Output channels_last.
at::Tensor qconv2d_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                       int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                       int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                       double out_scale, int64_t out_zero_point, const c10::optional<at::Tensor>& mod_scale,
                       const c10::optional<at::Tensor>& mod_shift, int64_t pixel_shuffle = 1,
                       c10::optional<at::ScalarType> out_dtype = c10::nullopt, double res_scale = 0,
                       int64_t res_zero_point = 0);

// An int8 SFT layer feeding an int8 conv (qsft_modulation.cpp): the uint8 map
// clamp(round((x·(scale + 1) + shift) / out_scale) + out_zero_point, 0, 255), where scale and shift are the float32
// outputs of two int8 1×1 convs (qconv2d_cpu with out_scale = 0) of the uint8 maps mid_s and mid_t (each with its
// scale, zero point, packed weights, per-channel scales and bias), never written to memory. x: float32 [N, K, H, W];
// the maps [N, C, H, W] of any channel counts; output channels_last.
at::Tensor qsft_modulation_cpu(const at::Tensor& x, const at::Tensor& mid_s, double s_scale, int64_t s_zero_point,
                               const at::Tensor& packed_s, const at::Tensor& wsum_s, const at::Tensor& w_scale_s,
                               const c10::optional<at::Tensor>& bias_s, const at::Tensor& mid_t, double t_scale,
                               int64_t t_zero_point, const at::Tensor& packed_t, const at::Tensor& wsum_t,
                               const at::Tensor& w_scale_t, const c10::optional<at::Tensor>& bias_t, double out_scale,
                               int64_t out_zero_point);

// A whole int8 SFT layer feeding an int8 conv: qsft_modulation_cpu of the maps mid_s and mid_t made from the uint8
// map cond (c_scale, c_zero_point) by two int8 1×1 convs (packed0_*, ...; activation code and slope as qconv2d_cpu's)
// requantized to (s_scale, s_zero_point) and (t_scale, t_zero_point), the inputs of the second convs (packed1_*, ...).
// Neither the maps nor the float scale and shift are written to memory; the bytes equal the three calls'.
at::Tensor qsft_layer_cpu(const at::Tensor& x, const at::Tensor& cond, double c_scale, int64_t c_zero_point,
                          int64_t activation, double negative_slope, const at::Tensor& packed0_s,
                          const at::Tensor& wsum0_s, const at::Tensor& w_scale0_s,
                          const c10::optional<at::Tensor>& bias0_s, double s_scale, int64_t s_zero_point,
                          const at::Tensor& packed1_s, const at::Tensor& wsum1_s, const at::Tensor& w_scale1_s,
                          const c10::optional<at::Tensor>& bias1_s, const at::Tensor& packed0_t,
                          const at::Tensor& wsum0_t, const at::Tensor& w_scale0_t,
                          const c10::optional<at::Tensor>& bias0_t, double t_scale, int64_t t_zero_point,
                          const at::Tensor& packed1_t, const at::Tensor& wsum1_t, const at::Tensor& w_scale1_t,
                          const c10::optional<at::Tensor>& bias1_t, double out_scale, int64_t out_zero_point);

// The int8 Winograd-domain 3×3 conv F(2×2, 3×3), stride 1, padding 1 (qwinograd.cpp): x uint8 (or float32 quantized
// on the way in) [N, C, H, W] with C >= 16; packed / wsum: the 16 positions' qconv2d_pack results of the transformed
// int8 weights [16, K, C] (each as [K, C, 1, 1]), concatenated; w_scale float32 [16, K] their scales; mult int32 [16]
// the positions' Q15 input multipliers. Epilogue as qconv2d_cpu's (uint8 or float32 output, float32 or uint8
// residual), PixelShuffle(r) of sub-pixel-ordered channels after it. Output channels_last.
at::Tensor qconv2d_winograd_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                                const at::Tensor& wsum, const at::Tensor& w_scale, const at::Tensor& mult,
                                const c10::optional<at::Tensor>& bias, int64_t activation, double negative_slope,
                                const c10::optional<at::Tensor>& residual, double out_scale, int64_t out_zero_point,
                                int64_t pixel_shuffle = 1, double res_scale = 0, int64_t res_zero_point = 0);

// Grouped int8 convs of 4, 8, 16 or 32 channels per group in and out (K = C) on AVX-512 VNNI (qgrouped.cpp):
// qconv2d_cpu's contract for groups > 1, with weights packed [R·S][Cg/4][K][4] and their per-channel sums wsum [K].
bool qconv2d_grouped_fits(int64_t C, int64_t K, int64_t groups);
at::Tensor qconv2d_grouped_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                               const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                               int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, int64_t activation, double negative_slope,
                               const c10::optional<at::Tensor>& residual, double out_scale, int64_t out_zero_point,
                               const c10::optional<at::Tensor>& mod_scale, const c10::optional<at::Tensor>& mod_shift,
                               c10::optional<at::ScalarType> out_dtype = c10::nullopt, double res_scale = 0,
                               int64_t res_zero_point = 0);

// The depthwise int8 conv (groups = C = K): w_q int8 [C, 1, R, S], per-channel w_scale; otherwise qconv2d_cpu's
// contract (uint8 or float32 input, modulation, epilogue, channels_last output). qdepthwise.cpp.
at::Tensor qconv2d_depthwise_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& w_q,
                                 const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                                 double out_scale, int64_t out_zero_point, const c10::optional<at::Tensor>& mod_scale,
                                 const c10::optional<at::Tensor>& mod_shift,
                                 c10::optional<at::ScalarType> out_dtype = c10::nullopt, double res_scale = 0,
                                 int64_t res_zero_point = 0);

}  // namespace sft
