// Launch plumbing and parameter checks shared by the tensor-core conv kernels (conv2d.cu, qconv2d.cu, sparse24.cu).
// CUDA runtime only.
#pragma once

#include <cuda_runtime.h>

namespace sft_cuda {

// kernel<<<grid, threads, smem_bytes, stream>>>(p), opting in above the default 48 KB of dynamic shared memory
// (cheap; done per launch so it holds on every device).
template <typename Kernel, typename Params>
cudaError_t launch_with_smem(Kernel kernel, dim3 grid, int threads, int smem_bytes, const Params& p,
                             cudaStream_t stream) {
  if (smem_bytes > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
    if (e != cudaSuccess) return e;
  }
  kernel<<<grid, threads, smem_bytes, stream>>>(p);
  return cudaGetLastError();
}

// The checks every implicit-GEMM conv's parameters pass (fields k, groups, r, s, stride_*, dil_*, activation, n, p,
// q): nullptr, or what is wrong.
template <typename Params>
const char* conv_params_error(const Params& p) {
  if (p.k <= 0 || p.groups < 1 || p.groups > 65535 || p.k % p.groups)
    return "k must be a positive multiple of groups, groups at most 65535 (grid.z)";
  if (p.r <= 0 || p.s <= 0 || p.stride_h <= 0 || p.stride_w <= 0 || p.dil_h <= 0 || p.dil_w <= 0)
    return "filter size, stride and dilation must be positive";
  if (p.activation < 0 || p.activation > 7) return "unknown activation";
  if ((long)p.n * p.p * p.q > 0x7fffffffL) return "N*P*Q exceeds the kernel's 32-bit row index: split the batch";
  return nullptr;
}

}  // namespace sft_cuda
