// SiLU and hardswish on vectors of floats: GCC vector types of any width (__m512, __m256 and the engine's v16 / v8
// alike), so every store that applies an activation (GEMM micro-kernel tiles, direct and depthwise convs, the
// Winograd output transform, the int8 stores) shares one definition, inlined into its own ISA. The cheap
// activations (relu, leaky relu, relu6) stay where they are, written per ISA.
#pragma once

#include <cstdint>

namespace sft {

// exp(t) for t in [-88, 88] (callers clamp): t = n·ln2 + r with |r| ≤ ln2/2, exp(r) by its Taylor polynomial of
// degree 6 (relative error under 2e-7 there), 2^n built in the exponent bits. n = -127 gives 0, not 2^-127.
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

// silu(x) = x·sigmoid(x) = x / (1 + exp(−x)), exp's argument clamped to [-88, 88] (x = +inf gives inf; NaN stays NaN:
// the comparisons are false for it).
template <class V>
__attribute__((always_inline)) inline V silu_v(V x) {
  V t = -x;
  t = t > 88.f ? V{} + 88.f : t;
  t = t < -88.f ? V{} - 88.f : t;
  return x / (exp_v(t) + 1.f);
}

// hardswish(x) = x·relu6(x + 3) / 6, as PyTorch computes it.
template <class V>
__attribute__((always_inline)) inline V hardswish_v(V x) {
  V u = x + 3.f;
  u = u < 0.f ? V{} : u;
  u = u > 6.f ? V{} + 6.f : u;
  return x * u / 6.f;
}

}  // namespace sft
