// Layout changes between NCHW and channels-last (NHWC) for float32 maps.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft {

// dst[b][j][i] = src[b][i][j] (+ add[b][j][i]) for B batches of rows×cols matrices, in cache-sized blocks.
void transpose_batched(const float* src, float* dst, const float* add, int64_t B, int64_t rows, int64_t cols);

// x laid out channels-last (from the buffer pool): a contiguous NCHW float32 map by the blocked transpose, any
// other tensor by ATen's copy; a channels-last x as it is.
at::Tensor to_channels_last_cpu(const at::Tensor& x);

}  // namespace sft
