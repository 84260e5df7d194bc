// Element conversions and the activation shared by the CUDA kernels' epilogues (float / half / bfloat16 storage,
// float math). Header-only, CUDA headers only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sft_cuda {
namespace elem {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// act: 0 none, 1 relu, 2 leaky_relu with `slope`, 3 relu6, 4 silu, 5 hardswish, 6 gelu (erf), 7 gelu (tanh form)
__device__ __forceinline__ float activate(float v, int act, float slope) {
  if (act == 1) return fmaxf(v, 0.f);
  if (act == 2) return v < 0.f ? v * slope : v;
  if (act == 3) return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);  // relu6; NaN compares false and passes
  if (act == 4) return v / (1.f + __expf(-v));                 // silu
  if (act == 5) return v * fminf(fmaxf(v + 3.f, 0.f), 6.f) / 6.f;  // hardswish
  if (act == 6) return 0.5f * v * (1.f + erff(v * 0.70710678f));  // gelu
  if (act == 7) return 0.5f * v * (1.f + tanhf(0.79788456f * (v + 0.044715f * v * v * v)));  // gelu, tanh form
  return v;
}

}  // namespace elem
}  // namespace sft_cuda
