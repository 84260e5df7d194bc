// SiLU, hardswish and GELU on vectors of floats: GCC vector types of any width (__m512, __m256 and the engine's v16 /
// v8 alike), so every store that applies an activation (GEMM micro-kernel tiles, direct and depthwise convs, the
// Winograd output transform, the int8 stores) shares one definition, inlined into its own ISA. The cheap
// activations (relu, leaky relu, relu6) stay where they are, written per ISA.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/engine/ukernel.h"

namespace sft {

// exp(t) for t in [-86, 86] (callers clamp): t = n·ln2 + r with |r| ≤ ln2/2, exp(r) by its Taylor polynomial of
// degree 6 (relative error under 2e-7 there), 2^n built in the exponent bits. Never a subnormal result: below
// exp(-86) (n ≤ -125) the product would be one, and every subnormal operand or result takes a microcode assist
// (an int8 conv whose outputs sat around 87 ran 5× slower).
template <class V>
__attribute__((always_inline)) inline V exp_v(V t) {
  typedef int32_t VI __attribute__((vector_size(sizeof(V))));
  // round to nearest through the float format: adding 1.5·2^23 leaves the integer part in the low mantissa bits
  const V big = V{} + 12582912.f;
  const V n = (t * 1.44269504088896341f + big) - big;
  const V r = (t - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4 (Cody-Waite)
  V p = V{} + (1.f / 720.f);
  p = p * r + (1.f / 120.f);
  p = p * r + (1.f / 24.f);
  p = p * r + (1.f / 6.f);
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  return p * (V)bits;
}

// x / (1 + exp(t)), t clamped to [-86, 86], so that neither exp nor the reciprocal is ever subnormal (x = +inf gives
// inf; NaN stays NaN: the comparisons are false for it): silu (t = −x) and the tanh form of gelu.
template <class V>
__attribute__((always_inline)) inline V x_sigmoid_v(V x, V t) {
  t = t > 86.f ? V{} + 86.f : t;
  t = t < -86.f ? V{} - 86.f : t;
  return x / (exp_v(t) + 1.f);
}

// silu(x) = x·sigmoid(x) = x / (1 + exp(−x)) (for x ≥ 86 the result is x, below -86 ~1e-36).
template <class V>
__attribute__((always_inline)) inline V silu_v(V x) {
  return x_sigmoid_v(x, -x);
}

// 1/d on AVX-512 by vrcp14ps and one Newton step (relative error ~2^-28, then a float's rounding): a 512-bit vdivps
// issues once per ~10-16 cycles on these cores, and the activations below need one reciprocal per vector.
__attribute__((target("avx512f"), always_inline)) inline __m512 rcp512(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.f)), r);
}

// x_sigmoid_v on AVX-512, the division by rcp512. (Side by side with the division, the int8 convs' SiLU store measured
// alike within this VM's noise; PERF_NOTES has the costs.)
__attribute__((target("avx512f"), always_inline)) inline __m512 x_sigmoid512(__m512 x, __m512 t) {
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-86.f)), _mm512_set1_ps(86.f));  // (NaN: x's NaN reaches the end)
  return _mm512_mul_ps(x, rcp512(_mm512_add_ps(exp_v(t), _mm512_set1_ps(1.f))));
}

__attribute__((target("avx512f"), always_inline)) inline __m512 silu512(__m512 x) {
  return x_sigmoid512(x, _mm512_sub_ps(_mm512_setzero_ps(), x));
}

// hardswish(x) = x·relu6(x + 3)/6 (times 1/6: within an ulp of PyTorch's division, at a multiply's cost).
template <class V>
__attribute__((always_inline)) inline V hardswish_v(V x) {
  V u = x + 3.f;
  u = u < 0.f ? V{} : u;
  u = u > 6.f ? V{} + 6.f : u;
  return x * u * (1.f / 6.f);
}

// gelu(x) = x·Φ(x) = x·(1 + erf(x/√2))/2, erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, the formula
// ATen's vectorized erf uses): for z = |x|/√2, 1 − erf(z) = t·P(t)·exp(−z²) with t = 1/(1 + 0.3275911·z). Written as
// q = x·t·P(t)·exp(−z²)/2, gelu is x − q for x > 0 and q otherwise, so negative inputs lose nothing to cancellation.
// x is clamped to [-20, 20] inside q and exp's argument at -80: no subnormal (x = +inf gives inf; NaN stays NaN).
// Here the steps after the reciprocal t = 1/(1 + 0.3275911·z), shared by gelu_v and gelu512 (t from rcp512).
template <class V>
__attribute__((always_inline)) inline V gelu_after_rcp(V x, V xc, V z, V t) {
  V p = V{} + 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  V e = -z * z;
  e = e < -80.f ? V{} - 80.f : e;
  const V q = xc * 0.5f * t * p * exp_v(e);
  return x > 0.f ? x - q : q;
}

template <class V>
__attribute__((always_inline)) inline V gelu_v(V x) {
  V xc = x > 20.f ? V{} + 20.f : x;
  xc = xc < -20.f ? V{} - 20.f : xc;
  const V z = (xc < 0.f ? -xc : xc) * 0.70710678118654752f;
  return gelu_after_rcp(x, xc, z, 1.f / (z * 0.3275911f + 1.f));
}

__attribute__((target("avx512f"), always_inline)) inline __m512 gelu512(__m512 x) {
  // (vmaxps / vminps return their second operand for a NaN: x's NaN stays in xc, so in q)
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(20.f), _mm512_max_ps(_mm512_set1_ps(-20.f), x));
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(xc), _mm512_set1_ps(0.70710678118654752f));
  return gelu_after_rcp(x, xc, z, rcp512(_mm512_fmadd_ps(z, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.f))));
}

// gelu with approximate="tanh": x·(1 + tanh(u))/2 = x / (1 + exp(−2u)), u = √(2/π)·(x + 0.044715·x³).
template <class V>
__attribute__((always_inline)) inline V gelu_tanh_arg(V x) {
  return (x * x * x * 0.044715f + x) * -1.5957691216057308f;  // −2u
}

template <class V>
__attribute__((always_inline)) inline V gelu_tanh_v(V x) {
  return x_sigmoid_v(x, gelu_tanh_arg(x));
}

// The activations computed here (codes from kActSilu on) for any vector type: the stores written for one ISA
// (Winograd's v16, the AVX2 int8 store) call this, the AVX-512 ones act512_wide.
template <class V>
__attribute__((always_inline)) inline V act_wide_v(V v, int act) {
  if (act == kActSilu) return silu_v(v);
  if (act == kActHardswish) return hardswish_v(v);
  if (act == kActGelu) return gelu_v(v);
  return gelu_tanh_v(v);
}

// SiLU, hardswish or GELU (act) of 16 floats, for the AVX-512 stores. Inlined: out of line, each call made the
// caller spill its live vector registers (all are caller-saved), which cost more than the ~25 instructions themselves.
__attribute__((target("avx512f"), always_inline)) inline __m512 act512_wide(__m512 v, int act) {
  if (act == kActSilu) return silu512(v);
  if (act == kActHardswish) return hardswish_v(v);
  if (act == kActGelu) return gelu512(v);
  return x_sigmoid512(v, gelu_tanh_arg(v));
}

}  // namespace sft
