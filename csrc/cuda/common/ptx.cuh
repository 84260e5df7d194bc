// PTX wrappers shared by the tensor-core kernels (conv2d.cu, qconv2d.cu): cp.async into shared memory and
// ldmatrix. Header-only, CUDA headers only.
#pragma once

#include <cuda_runtime.h>

namespace sft_cuda {
namespace ptx {

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  // src-size 0 writes 16 zero bytes: padding taps, rows past M and columns past K cost no branch.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Four 8×8 matrices of 16-byte rows: lanes 8j..8j+7 give matrix j's row addresses; lane t receives 4 bytes of
// each matrix (row t/4, bytes 4·(t%4)..+3), which is the A/B fragment layout of mma m16n8k16 (16-bit) and of
// m16n8k32 (8-bit) alike.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

}  // namespace ptx
}  // namespace sft_cuda
