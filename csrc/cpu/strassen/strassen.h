// sft_cpu::strassen_abc: one level of Strassen's algorithm with its additions fused into the GEMM engine.
#pragma once

#include <ATen/ATen.h>

namespace sft {

// (M, K) @ (K, N) -> (M, N), float32, M, K and N even and non-zero (the Python layer peels odd ones).
at::Tensor strassen_abc_cpu(const at::Tensor& a, const at::Tensor& b);

}  // namespace sft
