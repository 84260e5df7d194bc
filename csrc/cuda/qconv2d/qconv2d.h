// Torch-free interface of the CUDA int8 implicit-GEMM conv2d (qconv2d.cu). The binding (bindings.cpp) fills
// QConv2dParams from tensors; the public `sft::qconv2d` op (ops/qconv2d/cuda.py) lays them out.
//
// Layouts (all contiguous):
//   x        N × H × W × (G·Cg)    uint8, NHWC; Cg a multiple of 16 (the launcher pads with zeros)
//   w        K × R × S × Cg        int8, KRSC, K = G·Kg; padded channels hold 0
//   wsum     K                     int32, Σ over r, s, c of w[k] (carries the input zero point)
//   mult     K                     float32, x_scale · w_scale[k]
//   bias     K                     float32, optional
//   residual N × P × Q × K         float32, NHWC, optional; or residual_u8 (uint8, its own res_scale, res_zero_point)
//   y        N × P × Q × K         float32 (bfloat16: out_dtype 2), or uint8 when out_scale > 0 (int8: out_dtype 1)
// Math: acc = Σ x·w over every tap, padding taps reading the zero point zx (so they add 0 after the shift)
//   v = (acc − zx·wsum[k]) · mult[k] + bias[k] → relu | leaky_relu → + residual (or + (r − res_zero_point)·res_scale)
//   y = v (bfloat16: rounded to nearest even), or clamp(rint(v / out_scale) + out_zero_point, 0, 255) (int8: clamped
//   to [-128, 127], zero point in that range)
// Implicit GEMM per group (CUTLASS mapping): GEMM_M = N·P·Q, GEMM_N = Kg, GEMM_K = R·S·Cg; u8 × s8 products on
// mma.sync m16n8k32 (sm_80+), int32 sums.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "../common/tile_config.h"

namespace sft_cuda {

struct QConv2dParams {
  const uint8_t* x = nullptr;
  const int8_t* w = nullptr;
  const int32_t* wsum = nullptr;
  const float* mult = nullptr;
  const float* bias = nullptr;
  const float* residual = nullptr;
  const uint8_t* residual_u8 = nullptr;  // instead of residual: added as (r − res_zero_point)·res_scale
  float res_scale = 0.f;
  int res_zero_point = 0;
  void* y = nullptr;
  int n = 0, h = 0, w_in = 0, groups = 1, cg = 0;  // input: N, H, W, groups, channels per group
  int k = 0, r = 0, s = 0;                           // output channels, filter height/width
  int p = 0, q = 0;                                  // output height/width
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int x_zero_point = 0;
  int activation = 0;  // 0 none, 1 relu, 2 leaky_relu (conv2d.h's Activation)
  float negative_slope = 0.01f;
  float out_scale = 0.f;  // > 0: uint8 output
  int out_zero_point = 0;
  int out_dtype = 0;  // 0: uint8 (out_scale > 0) or float32; 1: int8 (out_scale > 0); 2: bfloat16 (out_scale = 0)
};

// Tile configurations, by index (the list in qconv2d.cu; BK counts int8 elements = bytes).
int qconv2d_num_tile_configs();
TileConfig qconv2d_tile_config(int index);
int qconv2d_choose_tile_config(const QConv2dParams& p);

// Checks the parameters, then launches on `stream`; config = -1 picks one. Returns cudaSuccess, a launch error,
// or cudaErrorInvalidValue (message in `why`, when not null) for parameters the kernel cannot run.
cudaError_t qconv2d_launch(const QConv2dParams& p, int config, cudaStream_t stream, const char** why = nullptr);

}  // namespace sft_cuda
