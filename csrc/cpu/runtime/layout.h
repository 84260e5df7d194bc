// Layout changes between NCHW and channels-last (NHWC) for float32 maps.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft {

// dst[b][j][i] = src[b][i][j] (+ add[b][j][i]) for B batches of rows×cols matrices, in cache-sized blocks.
void transpose_batched(const float* src, float* dst, const float* add, int64_t B, int64_t rows, int64_t cols);

// The output pixel after (n, p, q) in N·P·Q order: the next column, row or image. Walking pixels this way
// instead of dividing each flat index m into (m / PQ, m % PQ / Q, m % Q) saves three or four int64 divisions
// a pixel, which weigh against small tiles.
inline void next_pixel(int64_t& n, int64_t& p, int64_t& q, int64_t P, int64_t Q) {
  if (++q == Q) {
    q = 0;
    if (++p == P) p = 0, ++n;
  }
}

// x laid out channels-last (from the buffer pool): a contiguous NCHW float32 map by the blocked transpose, any
// other tensor by ATen's copy; a channels-last x with unit channel stride as it is.
at::Tensor to_channels_last_cpu(const at::Tensor& x);

// x NCHW-contiguous: a channels-last float32 map by the blocked transpose (a map handed back to an NCHW caller;
// ATen's copy took 5.1 ms for 256 channels at 56² on one Xeon core), any other tensor by ATen's copy.
at::Tensor to_nchw_cpu(const at::Tensor& x);

// PixelShuffle(r) of a conv output y [N, K, P, Q] (channels_last, dense) whose channels come in sub-pixel order
// (channel (i·r + j)·K/r² + c is PyTorch's c·r² + i·r + j): [N, K/r², P·r, Q·r], channels_last, one copy.
at::Tensor shuffle_sub_pixels(const at::Tensor& y, int64_t r);

}  // namespace sft
