// sft_cpu::conv2d: fp32 conv2d with a fused epilogue, y = act(conv(x·(scale + 1) + shift, w) + bias)
// [-> PixelShuffle(r)] + residual, on the GEMM engine (cpu/engine) or Winograd. Which path runs: select.h.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace sft {

// input (N, C, H, W) and weight (K, C/groups, R, S), any strides; bias (K); residual shaped like the output.
// activation: 0 none, 1 relu, 2 leaky relu with negative_slope. algorithm: 0 auto, 1 direct, 2 Winograd
// F(4×4,3×3), 3 Winograd F(2×2,3×3) (2 and 3: error where Winograd does not apply), 4 bf16: input and weight
// rounded to bfloat16, fp32 sums on AMX tiles or AVX512-BF16 vectors (groups 1; error where the CPU has
// neither); with algorithm 4 the input may be bfloat16 and out_dtype bfloat16 (the output rounded to nearest even
// in the store): maps handed over between bf16 convs at half the bytes. pixel_shuffle r >= 1 divides K by r².
// scale and shift (together or neither, shaped like input) modulate the input. The output is channels-last iff the
// input is (F.conv2d's rule).
at::Tensor conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                      int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                      int64_t algorithm, int64_t pixel_shuffle, const c10::optional<at::Tensor>& scale,
                      const c10::optional<at::Tensor>& shift, c10::optional<at::ScalarType> out_dtype = c10::nullopt);

// An SFT layer feeding a conv (sft_modulation.cpp): x·(scale + 1) + shift with scale = conv1x1(mid_s; w_s, b_s) and
// shift = conv1x1(mid_t; w_t, b_t), the two maps never written. x float32 [N, K, H, W]; mid maps [N, C, H, W] (a
// channel slice of a channels_last map is read in place); output channels_last.
at::Tensor sft_modulation_cpu(const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                              const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t, const at::Tensor& w_t,
                              const c10::optional<at::Tensor>& b_t);
// The same with the two convs in bf16 on AMX tiles (mid maps and weights rounded to bfloat16, float32 sums, bias and
// modulation): sft_modulation_bf16.cpp; error where conv2d_bf16_available() is false.
at::Tensor sft_modulation_bf16_cpu(const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                                   const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t,
                                   const at::Tensor& w_t, const c10::optional<at::Tensor>& b_t);

// A whole SFT layer in bf16 on AMX tiles (sft_modulation_bf16.cpp): x·(scale + 1) + shift with scale =
// conv1x1(leaky_relu(conv1x1(cond; w0_s, b0_s), negative_slope); w1_s, b1_s) and shift likewise (w0_t, w1_t): the
// condition map, the weights and the mid maps rounded to bfloat16, float32 sums, biases, activation and modulation;
// the mid maps stay in per-thread rows. Output channels_last.
at::Tensor sft_layer_bf16_cpu(const at::Tensor& x, const at::Tensor& cond, const at::Tensor& w0_s,
                              const c10::optional<at::Tensor>& b0_s, const at::Tensor& w0_t,
                              const c10::optional<at::Tensor>& b0_t, const at::Tensor& w1_s,
                              const c10::optional<at::Tensor>& b1_s, const at::Tensor& w1_t,
                              const c10::optional<at::Tensor>& b1_t, double negative_slope);

// Whether algorithm 4 (bf16: AMX tiles or AVX512-BF16 vectors) runs here (amx_bf16.cpp).
bool conv2d_bf16_available();
// What runs it: "amx", "vectors" or "none".
std::string conv2d_bf16_unit();
// GFLOP/s of back-to-back tdpbf16ps (or vdpbf16ps) over torch's threads (no memory traffic): the bf16 path's ceiling.
double conv2d_bf16_peak_gflops();

// Winograd output tiles per block (0: sized from kWinogradBlockBytes, config.h) (winograd.cpp).
void set_winograd_tiles_per_block(int64_t tiles);

}  // namespace sft
