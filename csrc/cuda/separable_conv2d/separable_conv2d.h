// Torch-free interface of the fused depthwise -> pointwise CUDA conv (separable_conv2d.cu). The binding
// (bindings.cpp, built only against a CUDA build of PyTorch) fills SeparableParams from tensors.
//
// Layouts (all contiguous):
//   x         N × H × W × C             NHWC
//   dw        CM × R × S                depthwise weight, CM = C·mult (mid channel cm reads input channel cm / mult)
//   dw_bias   CM                        optional
//   pw        K × CM                    pointwise weight
//   pw_bias   K                         optional
//   y         N × P × Q × K             NHWC
//   residual                            same shape as y, optional
// y = act(pw · mid_act(dw ⋆ x + dw_bias) + pw_bias) + residual; the depthwise outputs of a block's pixels stay in
// shared memory (never written to global memory).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace sft_cuda {

enum class SepDType : int { kHalf = 0, kBFloat16 = 1, kFloat = 2 };

struct SeparableParams {
  const void* x = nullptr;
  const void* dw = nullptr;
  const void* dw_bias = nullptr;
  const void* pw = nullptr;
  const void* pw_bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  int n = 0, h = 0, w_in = 0, c = 0, mult = 1;  // input N, H, W, C; channel multiplier
  int k = 0, r = 0, s = 0;                      // output channels, depthwise filter height/width
  int p = 0, q = 0;                             // output height/width
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int mid_activation = 0, activation = 0;       // 0 none, 1 relu, 2 leaky_relu
  float negative_slope = 0.01f;
  int shuffle = 1;  // r > 1: y (and residual) are PixelShuffle(r)'s N × P·r × Q·r × K/r², written from the epilogue
  SepDType dtype = SepDType::kHalf;
};

// Checks the parameters, then launches on `stream`. Returns cudaSuccess, a launch error, or cudaErrorInvalidValue
// for parameters the kernel cannot run (message in `why`, when not null).
cudaError_t separable_conv2d_launch(const SeparableParams& p, cudaStream_t stream, const char** why = nullptr);

}  // namespace sft_cuda
