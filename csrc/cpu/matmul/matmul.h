// sft_cpu::matmul: batched fp32 GEMM on strided views, on the GEMM engine (cpu/engine/gemm.h).
#pragma once

#include <ATen/ATen.h>

namespace sft {

// (B, M, K) @ (B, K, N) -> (B, M, N), or (M, K) @ (K, N) -> (M, N); float32 operands with any strides
// (stride-0 batch dims from broadcasting need no copy).
at::Tensor matmul_cpu(const at::Tensor& a, const at::Tensor& b);

}  // namespace sft
