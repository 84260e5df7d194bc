// Fused depthwise -> pointwise conv (see separable_conv2d.h for layouts).
//
// A block owns BM output pixels × BN output channels (GEMM M = N·P·Q, N = K, K = CM mid channels). For each chunk
// of BK mid channels it
//   1. computes their depthwise outputs at its BM pixels into shared memory (fp32; R·S taps per value, consecutive
//      threads on consecutive mid channels, so the NHWC input reads coalesce), with the depthwise bias and the mid
//      activation;
//   2. stages the pointwise weights' BK × BN slice in shared memory;
//   3. multiplies: each thread accumulates a TM × TN register tile in fp32.
// The epilogue adds the bias, applies the activation and the residual and stores NHWC (with a PixelShuffle, each
// output at its shuffled place, the residual read there). CUDA cores, not tensor
// cores: the depthwise stage is memory-bound and the pointwise GEMM is small per pixel (K ≤ a few hundred); a
// tensor-core (mma.sync) pointwise stage is the next step once this has been measured on a GPU.
#include "separable_conv2d.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../common/elem.cuh"

namespace sft_cuda {
namespace {

constexpr int BM = 64, BN = 64, BK = 32, THREADS = 256, TM = 4, TN = 4;
static_assert((BM / TM) * (BN / TN) == THREADS, "one TM x TN tile per thread");
static_assert(BM * BK % THREADS == 0 && BN * BK % THREADS == 0, "whole staging rounds");

using elem::activate;
using elem::from_f;
using elem::to_f;

template <typename T>
__global__ void __launch_bounds__(THREADS) separable_kernel(SeparableParams p) {
  // +1: the staging writes walk the first index across a warp; unpadded rows would all start on one bank
  __shared__ float d_s[BK][BM + 1];  // depthwise outputs: [mid channel][pixel]
  __shared__ float w_s[BK][BN + 1];  // pointwise weights: [mid channel][output channel]
  const T* __restrict__ x = static_cast<const T*>(p.x);
  const T* __restrict__ dw = static_cast<const T*>(p.dw);
  const T* __restrict__ pw = static_cast<const T*>(p.pw);
  const int tid = threadIdx.x;
  const int64_t m_total = static_cast<int64_t>(p.n) * p.p * p.q;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int n0 = blockIdx.y * BN;
  const int cm_total = p.c * p.mult, taps = p.r * p.s;

  // the staging thread's mid channel and its first pixel row (stage 1), or output channel column (stage 2)
  const int kk = tid % BK, row0 = tid / BK;
  constexpr int ROWS = THREADS / BK;
  // the compute thread's tile
  const int ty = tid / (BN / TN), tx = tid % (BN / TN);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < cm_total; k0 += BK) {
    // 1. depthwise outputs of mid channel k0 + kk at pixels row0, row0 + ROWS, ...
    const int cm = k0 + kk;
    const bool cm_ok = cm < cm_total;
    const int ci = cm_ok ? cm / p.mult : 0;
    const float dwb = (cm_ok && p.dw_bias) ? to_f(static_cast<const T*>(p.dw_bias)[cm]) : 0.f;
    for (int row = row0; row < BM; row += ROWS) {
      const int64_t m = m0 + row;
      float v = 0.f;
      if (cm_ok && m < m_total) {
        const int64_t nb = m / (static_cast<int64_t>(p.p) * p.q);
        const int pq = static_cast<int>(m - nb * p.p * p.q);
        const int ih0 = (pq / p.q) * p.stride_h - p.pad_h, iw0 = (pq % p.q) * p.stride_w - p.pad_w;
        const T* xb = x + nb * p.h * p.w_in * static_cast<int64_t>(p.c) + ci;
        const T* wt = dw + static_cast<int64_t>(cm) * taps;
        for (int r = 0; r < p.r; ++r) {
          const int ih = ih0 + r * p.dil_h;
          if (ih < 0 || ih >= p.h) continue;
          for (int s = 0; s < p.s; ++s) {
            const int iw = iw0 + s * p.dil_w;
            if (iw < 0 || iw >= p.w_in) continue;
            v += to_f(xb[(static_cast<int64_t>(ih) * p.w_in + iw) * p.c]) * to_f(wt[r * p.s + s]);
          }
        }
        v = activate(v + dwb, p.mid_activation, p.negative_slope);
      }
      d_s[kk][row] = v;
    }
    // 2. the pointwise weights pw[n0 + col, k0 + kk]: consecutive threads read consecutive mid channels of a row
    for (int col = row0; col < BN; col += ROWS) {
      const int nn = n0 + col;
      w_s[kk][col] = (cm_ok && nn < p.k) ? to_f(pw[static_cast<int64_t>(nn) * cm_total + cm]) : 0.f;
    }
    __syncthreads();
    // 3. acc += d_s^T · w_s over this chunk
#pragma unroll 8
    for (int t = 0; t < BK; ++t) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = d_s[t][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = w_s[t][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

  // epilogue: bias, activation, residual, store NHWC
  T* __restrict__ y = static_cast<T*>(p.y);
  const T* res = static_cast<const T*>(p.residual);
  const T* pwb = static_cast<const T*>(p.pw_bias);
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + ty * TM + i;
    if (m >= m_total) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int nn = n0 + tx * TN + j;
      if (nn >= p.k) continue;
      float v = acc[i][j] + (pwb ? to_f(pwb[nn]) : 0.f);
      v = activate(v, p.activation, p.negative_slope);
      int64_t off = m * p.k + nn;
      if (p.shuffle > 1) {  // channel nn = c·r² + i·r + j of pixel (n, pp, qq) goes to (n, pp·r + i, qq·r + j, c)
        const int r = p.shuffle, cs = p.k / (r * r);
        const int64_t qq = m % p.q, pp = m / p.q % p.p, n = m / ((int64_t)p.p * p.q);
        const int i = nn / r % r, j = nn % r;
        off = ((n * p.p * r + pp * r + i) * p.q * r + qq * r + j) * cs + nn / (r * r);
      }
      if (res) v += to_f(res[off]);
      y[off] = from_f<T>(v);
    }
  }
}

}  // namespace

cudaError_t separable_conv2d_launch(const SeparableParams& p, cudaStream_t stream, const char** why) {
  auto fail = [&](const char* msg) {
    if (why) *why = msg;
    return cudaErrorInvalidValue;
  };
  if (!p.x || !p.dw || !p.pw || !p.y) return fail("x, dw, pw and y must be set");
  if (p.n < 1 || p.h < 1 || p.w_in < 1 || p.c < 1 || p.mult < 1 || p.k < 1 || p.r < 1 || p.s < 1)
    return fail("every size must be positive");
  if (p.p < 1 || p.q < 1) return fail("the output would be empty");
  if (p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 || p.pad_h < 0 || p.pad_w < 0)
    return fail("stride and dilation must be positive, padding non-negative");
  if (p.mid_activation < 0 || p.mid_activation > 7 || p.activation < 0 || p.activation > 7)
    return fail("activations are 0 (none), 1 (relu), 2 (leaky_relu), 3 (relu6), 4 (silu), 5 (hardswish), 6 (gelu) or "
                "7 (gelu, tanh form)");
  if (p.shuffle < 1 || p.k % (p.shuffle * p.shuffle)) return fail("shuffle must be >= 1 with shuffle² dividing k");
  const int64_t m_total = static_cast<int64_t>(p.n) * p.p * p.q;
  const int64_t blocks_m = (m_total + BM - 1) / BM;
  if (blocks_m > 0x7fffffff) return fail("too many output pixels for one launch");
  const dim3 grid(static_cast<unsigned>(blocks_m), (p.k + BN - 1) / BN);
  switch (p.dtype) {
    case SepDType::kHalf: separable_kernel<__half><<<grid, THREADS, 0, stream>>>(p); break;
    case SepDType::kBFloat16: separable_kernel<__nv_bfloat16><<<grid, THREADS, 0, stream>>>(p); break;
    case SepDType::kFloat: separable_kernel<float><<<grid, THREADS, 0, stream>>>(p); break;
    default: return fail("dtype must be float16, bfloat16 or float32");
  }
  return cudaGetLastError();
}

}  // namespace sft_cuda
