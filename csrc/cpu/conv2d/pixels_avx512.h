// The AVX-512 pieces the channel-local convs share (depthwise.cpp, grouped.cpp): 16-channel loads, accumulators
// started at the bias, and the store with activation and residual.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"

namespace sft {

// 16 channels from p: a plain load where all 16 are there (Full), else masked. Masked loads and stores need the
// mask in a k-register, and the kmovw that sets it runs on port 5, one of the two 512-bit FMA ports.
template <bool Full>
__attribute__((target("avx512f"), always_inline)) inline __m512 load16(const float* p, __mmask16 m) {
  return Full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}

// The bias in each of P accumulators (16 channels from c; zero without a bias).
template <int P, bool Full = false>
__attribute__((target("avx512f"), always_inline)) inline void init_pixels(__m512* acc, const float* bias, int64_t c,
                                                                          __mmask16 m) {
  const __m512 b = bias ? load16<Full>(bias + c, m) : _mm512_setzero_ps();
  for (int i = 0; i < P; ++i) acc[i] = b;
}

// Activation, residual and the store of P pixels × 16 channels from c. Wide: the activation may be one of
// act512_wide's (kActSilu on); callers instantiate Wide = false for the other activations, or the compiler hoists
// act512_wide's constants into registers ahead of their loops, which need every register.
template <int P, bool Full, bool Wide>
__attribute__((target("avx512f"), always_inline)) inline void store_pixels(const __m512* acc, __mmask16 m, int64_t c,
                                                                           int act, float slope, const float* res,
                                                                           int64_t rld, float* d, int64_t ld) {
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < P; ++i) {
    __m512 v = acc[i];
    if (act == kActRelu) v = _mm512_max_ps(zero, v);  // vmaxps returns its second operand for a NaN: NaN stays NaN
    if (act == kActLeaky)
      v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, _mm512_set1_ps(slope));
    if (act == kActRelu6) v = _mm512_min_ps(_mm512_set1_ps(kRelu6Max), _mm512_max_ps(zero, v));
    if (Wide && act >= kActSilu) v = act512_wide(v, act);
    if (res) v = _mm512_add_ps(v, load16<Full>(res + i * rld + c, m));
    if (Full)
      _mm512_storeu_ps(d + i * ld + c, v);
    else
      _mm512_mask_storeu_ps(d + i * ld + c, m, v);
  }
}

}  // namespace sft
