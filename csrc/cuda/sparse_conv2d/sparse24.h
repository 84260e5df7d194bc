// Torch-free interface of the 2:4 sparse tensor-core conv (sparse24.cu): the weight is the sparse operand of
// mma.sp (sm_80+), so the GEMM is transposed against conv2d.cu's: GEMM_M = Kg output channels (rows of the
// compressed weight), GEMM_N = N·P·Q output pixels, GEMM_K = R·S·Cg. The binding (bindings.cpp) fills the params;
// ops/sparse_conv2d/cuda.py packs the weight (pack24).
//
// Layouts (all contiguous; T = half or bfloat16):
//   x        N × H × W × (G·Cg)         T, NHWC; Cg a multiple of 8
//   wv       K × a_ld                   T, the kept values: each aligned run of 4 reduction steps of the KRSC
//                                       weight (Cg padded to 8, R·S·Cg padded to a multiple of BK) keeps 2, in order
//   meta     G × ceil(Kg/BM) × (a_ld·2/BK) × (BM/16) × (BK/32) × 32     uint32, in mma.sp fragment order: word
//            [.., rb, ks, lane] holds, for rows 16·rb + lane/4 (low half) and + 8 (high half) of the block's rows,
//            the 2-bit positions of the kept values of 16 reduction steps (32·ks + 16·(lane % 2) ..), four bits per
//            run of 4, first position in the low two bits; selector 0 reads lanes 4i and 4i + 1
//   bias     K                          T, optional
//   residual N × P × Q × K              T, optional
//   y        N × P × Q × K              T
// Epilogue: act(conv + bias) + residual, as conv2d.cu's (no PixelShuffle).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "../common/tile_config.h"

namespace sft_cuda {

struct Sparse24Params {
  const void* x = nullptr;
  const void* wv = nullptr;
  const uint32_t* meta = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  int n = 0, h = 0, w_in = 0, groups = 1, cg = 0;  // input: N, H, W, groups, channels per group
  int k = 0, r = 0, s = 0;                           // output channels, filter height/width
  int p = 0, q = 0;                                  // output height/width
  int a_ld = 0;                                      // wv's row length (half the padded reduction)
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int activation = 0;  // 0 none, 1 relu, 2 leaky_relu
  float negative_slope = 0.01f;
  int bf16 = 0;  // 0: half, 1: bfloat16
};

// Tile configurations, by index (the list in sparse24.cu): BM output channels × BN pixels × BK reduction steps
// per block, WM × WN per warp, STAGES-deep cp.async ring.
int sparse24_num_tile_configs();
TileConfig sparse24_tile_config(int index);
int sparse24_choose_tile_config(const Sparse24Params& p);

// Launches tile config `config` (>= 0: the metadata is laid out for its BM and BK). Returns cudaSuccess, a launch
// error, or cudaErrorInvalidValue (message in `why`) for parameters the kernel cannot run.
cudaError_t sparse24_launch(const Sparse24Params& p, int config, cudaStream_t stream, const char** why = nullptr);

}  // namespace sft_cuda
