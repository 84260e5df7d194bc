// Which algorithm runs a CPU conv. Every rule lives in select.cpp: what each path can take and where it pays.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace sft {

enum class ConvPath { kImplicitGemm, kTaps, kRows, kThin, kDepthwise, kGrouped };

// The Winograd output tile for `algorithm` (0 auto, 1 direct, 2 F(4×4,3×3), 3 F(2×2,3×3)) on this problem: 4 or
// 2, or 0 for a direct conv. Throws where 2 or 3 asks for Winograd and it does not apply.
int64_t winograd_tile(int64_t algorithm, int64_t N, int64_t C, int64_t K, int64_t R, int64_t S, int64_t P,
                      int64_t Q, at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups);

// The direct path for x (unit channel stride) and weight into out, adding res (undefined: none), when Winograd
// does not run. modulated: scale and shift are fused into the input's packing, which only the implicit-GEMM and
// taps paths do.
ConvPath direct_conv_path(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef dilation, int64_t groups, bool modulated, const at::Tensor& res,
                          const at::Tensor& out);

// The name of the direct path a channels_last x, weight and a channels_last output without a residual take
// ("implicit_gemm", "taps", "rows", "thin", "depthwise", "grouped"): what tests and benchmarks ask.
std::string conv2d_direct_path(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                               at::IntArrayRef dilation, int64_t groups);

}  // namespace sft
