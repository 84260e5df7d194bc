// The AVX2 tile of the int8 conv (CPUs without AVX-512 VNNI): exact 16-bit products, no saturation.
//
// vpmaddubsw (u8·s8 pairs summed into int16) saturates: 255·127·2 > 32767, which is why oneDNN halves the weights
// on such CPUs. This tile widens both operands to 16 bits instead and multiplies with vpmaddwd (int16 pairs summed
// into int32, exact for u8·s8): a pixel's 4 channels, widened and broadcast to every 64-bit lane, meet 4 output
// channels' 4 weights per vector (the packed [tap][C/4][32][4] rows sign-extended 16 bytes at a time), giving two
// partial sums per output channel that a horizontal add joins. Two pixels × 16 output channels per pass keep 8
// accumulators, 4 weight vectors and the broadcast input in the 16 registers. The store is the portable one.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

namespace {

// 8 partial-pair vectors of one pixel and 16 outputs → 16 int32 sums in output order.
__attribute__((target("avx2"))) inline void join16(const __m256i* c, int32_t* out) {
  for (int h = 0; h < 2; ++h) {
    const __m256i s = _mm256_hadd_epi32(c[2 * h], c[2 * h + 1]);  // (k0,k1 | k4,k5) (k2,k3 | k6,k7) per 128 lane
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * h), _mm256_permute4x64_epi64(s, 0xD8));
  }
}

}  // namespace

__attribute__((target("avx2"))) void tile_avx2(const uint8_t* const* rows, int mr, const int64_t* toff,
                                               int64_t ntaps, int64_t kg, const int8_t* b, int64_t j0, int ncols,
                                               const Store& s) {
  alignas(32) int32_t acc[kMR * kNR];
  for (int i0 = 0; i0 < mr; i0 += 2) {
    const bool two = i0 + 1 < mr;
    for (int half = 0; half < 2 && half * 16 < ncols; ++half) {
      __m256i c0[4], c1[4];
      for (int q = 0; q < 4; ++q) c0[q] = c1[q] = _mm256_setzero_si256();
      for (int64_t t = 0; t < ntaps; ++t) {
        const uint8_t* a0 = rows[i0] + toff[t];
        const uint8_t* a1 = two ? rows[i0 + 1] + toff[t] : a0;
        const int8_t* wrow = b + t * kg * kNR * 4 + half * 64;
        for (int64_t g = 0; g < kg; ++g, wrow += kNR * 4) {
          __m256i w[4];
          for (int q = 0; q < 4; ++q)
            w[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wrow + 16 * q)));
          int32_t x0, x1;
          std::memcpy(&x0, a0 + 4 * g, 4);
          std::memcpy(&x1, a1 + 4 * g, 4);
          const __m256i v0 = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(x0)));
          const __m256i v1 = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(x1)));
          for (int q = 0; q < 4; ++q) {
            c0[q] = _mm256_add_epi32(c0[q], _mm256_madd_epi16(v0, w[q]));
            c1[q] = _mm256_add_epi32(c1[q], _mm256_madd_epi16(v1, w[q]));
          }
        }
      }
      join16(c0, acc + i0 * kNR + 16 * half);
      if (two) join16(c1, acc + (i0 + 1) * kNR + 16 * half);
    }
  }
  store_sums(acc, mr, j0, ncols, s);
}

}  // namespace sft::qconv
