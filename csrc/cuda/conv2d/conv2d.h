// Torch-free interface of the CUDA implicit-GEMM conv2d (conv2d.cu). The binding (bindings.cpp, built only
// against a CUDA build of PyTorch) fills Conv2dParams from tensors.
//
// Layouts (all contiguous):
//   x        N × H × W × (G·Cg)           NHWC; Cg (channels per group) a multiple of 8 (the binding pads)
//   w        K × R × S × Cg               KRSC (= PyTorch's channels_last weight), K = G·Kg
//   bias     K                            optional
//   y        N × (P·r) × (Q·r) × K/r²      NHWC; r = pixel_shuffle
//   residual                              same shape as y, optional
// Epilogue: v = act(conv + bias); PixelShuffle(r) by the store index; v += residual. (SFT modulation belongs to
// the conv's input: the caller applies it to x first.)
// Implicit GEMM per group (CUTLASS mapping): GEMM_M = N·P·Q, GEMM_N = Kg, GEMM_K = R·S·Cg.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "../common/tile_config.h"

namespace sft_cuda {

enum class DType : int { kHalf = 0, kBFloat16 = 1 };
enum Activation : int {
  kNone = 0, kRelu = 1, kLeakyRelu = 2, kRelu6 = 3, kSilu = 4, kHardswish = 5, kGelu = 6, kGeluTanh = 7
};

struct Conv2dParams {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  int n = 0, h = 0, w_in = 0, groups = 1, cg = 0;  // input: N, H, W, groups, channels per group
  int k = 0, r = 0, s = 0;                           // output channels, filter height/width
  int p = 0, q = 0;                                  // conv output height/width (before the shuffle)
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int activation = kNone;
  float negative_slope = 0.01f;
  int shuffle = 1;
  DType dtype = DType::kHalf;
  // Block-sparse weights (optional, device int32): for group g and N tile j (BN output channels of this launch's
  // tile config), the K tiles (BK-wide blocks of the KRSC weight's R·S·Cg reduction) that hold a nonzero are
  // blk_idx[blk_ptr[g·ntiles + j] .. blk_ptr[g·ntiles + j + 1]), ascending; only those are loaded and multiplied.
  const int* blk_ptr = nullptr;
  const int* blk_idx = nullptr;
};

// Tile configurations, by index (the list in conv2d.cu; the struct in ../common/tile_config.h).
int num_tile_configs();
TileConfig tile_config(int index);

// The config `choose_tile_config` picks for this problem (what config = -1 runs).
int choose_tile_config(const Conv2dParams& p);

// Checks the parameters, then launches on `stream`. config = -1 picks one. Returns cudaSuccess, a launch
// error, or cudaErrorInvalidValue for parameters the kernel cannot run (message in `why`, when not null).
cudaError_t conv2d_launch(const Conv2dParams& p, int config, cudaStream_t stream, const char** why = nullptr);

}  // namespace sft_cuda
