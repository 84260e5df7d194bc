// The portable and AVX-512 VNNI tiles of the int8 conv, and the AVX-512 store they and the AMX block share.
//
// vpdpbusd multiplies 4 u8·s8 pairs and adds them into each int32 lane; the weights are packed
// [K/32][tap][C/4][32 channels][4] so one tap's 4 channels for 32 output channels are two 64-byte vectors, and a 14×32
// tile keeps 28 int32 accumulators in registers. Row i's tap t is at rows[i] + toff[t] in the padded input.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

namespace {

inline float store_value(int32_t acc, int j, const Store& s, const float* res_row) {
  float v = static_cast<float>(acc - s.comp[j]) * s.mult[j] + (s.bias ? s.bias[j] : 0.f);
  v = activate(v, s.act, s.slope);
  return res_row ? v + res_row[j] : v;
}

// y = (acc − zx·wsum)·mult + bias → activation → + residual → float32, or uint8 requantized; 16 channels of pixel i.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void store16(__m512i a, int i, int c0, __mmask16 m,
                                                                          __m512i comp, __m512 mult, __m512 bias,
                                                                          const Store& s) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, comp)), mult, bias);
  const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
  if (s.act == kActRelu) v = _mm512_mask_mov_ps(v, neg, zero);
  if (s.act == kActLeaky) v = _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(s.slope));
  if (s.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, s.res + i * s.ldr + c0));
  if (s.quant) {
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(s.inv_out))),
                                 _mm512_set1_epi32(s.zo));
    q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
    _mm512_mask_cvtepi32_storeu_epi8(static_cast<uint8_t*>(s.out) + i * s.ldo + c0, m, q);
  } else {
    _mm512_mask_storeu_ps(static_cast<float*>(s.out) + i * s.ldo + c0, m, v);
  }
}

__attribute__((target("avx512f"))) inline __mmask16 tail_mask(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_vnni_mr(
    const uint8_t* const* rows, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b, int64_t j0,
    int ncols, const Store& s) {
  __m512i acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
  const int8_t* bp = b;
  for (int64_t t = 0; t < ntaps; ++t) {
    const int64_t to = toff[t];
    for (int64_t g = 0; g < kg; ++g, bp += kNR * 4) {
      const __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 64);
      for (int i = 0; i < MR; ++i) {
        int32_t word;
        std::memcpy(&word, rows[i] + to + 4 * g, 4);
        const __m512i a = _mm512_set1_epi32(word);
        acc0[i] = _mm512_dpbusd_epi32(acc0[i], a, b0);
        acc1[i] = _mm512_dpbusd_epi32(acc1[i], a, b1);
      }
    }
  }
  for (int h = 0; h < 2 && h * 16 < ncols; ++h) {
    const int c0 = h * 16;
    const __mmask16 m = tail_mask(ncols - c0);
    const int64_t jj = j0 + c0;
    const __m512i comp = _mm512_loadu_si512(s.comp + jj);
    const __m512 mult = _mm512_loadu_ps(s.mult + jj);
    const __m512 bias = s.bias ? _mm512_loadu_ps(s.bias + jj) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) store16(h ? acc1[i] : acc0[i], i, c0, m, comp, mult, bias, s);
  }
}

using TileFn = void (*)(const uint8_t* const*, const int64_t*, int64_t, int64_t, const int8_t*, int64_t, int,
                        const Store&);

template <int... I>
constexpr std::array<TileFn, sizeof...(I)> vnni_table(std::integer_sequence<int, I...>) {
  return {tile_vnni_mr<I + 1>...};
}

}  // namespace

void tile_vnni(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
               int64_t j0, int ncols, const Store& s) {
  static constexpr auto table = vnni_table(std::make_integer_sequence<int, kMR>{});
  table[mr - 1](rows, toff, ntaps, kg, b, j0, ncols, s);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void store_block(const int32_t* acc, int mr, int64_t j0,
                                                                      int ncols, const Store& s) {
  for (int h = 0; h < 2 && h * 16 < ncols; ++h) {
    const int c0 = h * 16;
    const __mmask16 m = tail_mask(ncols - c0);
    const int64_t jj = j0 + c0;
    const __m512i comp = _mm512_loadu_si512(s.comp + jj);
    const __m512 mult = _mm512_loadu_ps(s.mult + jj);
    const __m512 bias = s.bias ? _mm512_loadu_ps(s.bias + jj) : _mm512_setzero_ps();
    for (int i = 0; i < mr; ++i) store16(_mm512_loadu_si512(acc + i * kNR + c0), i, c0, m, comp, mult, bias, s);
  }
}

void tile_generic(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
                  int64_t j0, int ncols, const Store& s) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < ncols; ++j) {
      int32_t acc = 0;
      const int8_t* bp = b;
      for (int64_t t = 0; t < ntaps; ++t)
        for (int64_t g = 0; g < kg; ++g, bp += kNR * 4) {
          const uint8_t* a = rows[i] + toff[t] + 4 * g;
          const int8_t* w = bp + j * 4;
          acc += int32_t(a[0]) * w[0] + int32_t(a[1]) * w[1] + int32_t(a[2]) * w[2] + int32_t(a[3]) * w[3];
        }
      const float* rr = s.res ? s.res + i * s.ldr : nullptr;
      const float v = store_value(acc, int(j0) + j, s, rr ? rr - j0 : nullptr);
      if (s.quant) {
        const float q = std::nearbyint(v * s.inv_out) + float(s.zo);
        static_cast<uint8_t*>(s.out)[i * s.ldo + j] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, q)));
      } else {
        static_cast<float*>(s.out)[i * s.ldo + j] = v;
      }
    }
}

}  // namespace sft::qconv
