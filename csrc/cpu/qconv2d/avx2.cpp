// The 256-bit tiles of the int8 conv (CPUs without AVX-512 VNNI): AVX2 with exact 16-bit products, and AVX-VNNI.
//
// AVX2: vpmaddubsw (u8·s8 pairs summed into int16) saturates: 255·127·2 > 32767, which is why oneDNN halves the
// weights on such CPUs. This tile widens both operands to 16 bits instead and multiplies with vpmaddwd (int16 pairs
// summed into int32, exact for u8·s8): a pixel's 4 channels, widened and broadcast to every 64-bit lane, meet 4 output
// channels' 4 weights per vector (the packed [tap][C/4][32][4] rows sign-extended 16 bytes at a time), giving two
// partial sums per output channel that a horizontal add joins. Two pixels × 16 output channels per pass keep 8
// accumulators, 4 weight vectors and the broadcast input in the 16 registers; the store is 8 channels a vector.
//
// AVX-VNNI (Intel client cores from Alder Lake on, which lack AVX-512): vpdpbusd on 256 bits, 4 u8·s8 pairs into
// each int32 lane exactly, on the same packed rows as the AVX-512 tile: a 16-channel half panel's 4 channels are two
// 32-byte vectors whose lanes are already the output channels, so no horizontal add. Up to 6 pixels × 16 channels a
// pass keep 12 accumulators, 2 weight vectors and the broadcast in the 16 registers VEX code has.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"
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

// The store of accumulators acc [mr][32] with AVX2 (8 channels a vector; a channel tail goes to store_sums).
__attribute__((target("avx2,fma"))) void store_avx2(const int32_t* acc, int mr, int64_t j0, int ncols, const Store& s) {
  const int full = ncols / 8 * 8;
  const Types& ty = s.ty;
  const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(s.slope), inv = _mm256_set1_ps(ty.inv_out);
  const __m256i zo = _mm256_set1_epi32(ty.zo), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255),
                rzp = _mm256_set1_epi32(ty.rzp);
  const __m256 rscale = _mm256_set1_ps(ty.rscale), big = _mm256_set1_ps(512.f);
  const int act = s.act;
  const bool quant = ty.quant, s8 = ty.s8, bf16 = ty.bf16, res_u8 = ty.res_u8;
  const void* res = s.res;
  for (int c = 0; c < full; c += 8) {
    const __m256i comp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.comp + j0 + c));
    const __m256 mult = _mm256_loadu_ps(s.mult + j0 + c);
    const __m256 bias = s.bias ? _mm256_loadu_ps(s.bias + j0 + c) : zero;
    for (int i = 0; i < mr; ++i) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i * kNR + c));
      __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(a, comp)), mult, bias);
      if (act == kActRelu) v = _mm256_max_ps(v, zero);
      if (act == kActLeaky) v = _mm256_blendv_ps(v, _mm256_mul_ps(v, slope), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
      if (act == kActRelu6) v = _mm256_min_ps(_mm256_max_ps(v, zero), _mm256_set1_ps(kRelu6Max));
      if (act >= kActSilu) v = act_wide_v(v, act);
      if (res && res_u8) {
        const __m128i r8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(
            static_cast<const uint8_t*>(res) + i * s.ldr + c));
        const __m256i d = _mm256_sub_epi32(_mm256_cvtepu8_epi32(r8), rzp);
        v = _mm256_add_ps(v, rounded(_mm256_mul_ps(_mm256_cvtepi32_ps(d), rscale)));
      } else if (res) {
        v = _mm256_add_ps(v, _mm256_loadu_ps(static_cast<const float*>(res) + i * s.ldr + c));
      }
      if (quant) {
        // clamped at 512 first: past int32's range the conversion gives INT_MIN (stored as 0)
        __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(big, _mm256_mul_ps(v, inv))), zo);
        q = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
        const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        __m128i b8 = _mm_packus_epi16(w16, w16);
        if (s8) b8 = _mm_xor_si128(b8, _mm_set1_epi8(char(0x80)));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(s.out) + i * s.ldo + c), b8);
      } else if (bf16) {
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
        r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));  // ≤ 0xFFFF
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(s.out) + i * s.ldo + c), h);
      } else {
        _mm256_storeu_ps(static_cast<float*>(s.out) + i * s.ldo + c, v);
      }
    }
  }
  if (full < ncols) {  // the channel tail: the portable store on the shifted pointers
    Store t = s;
    t.res = advance(s.res, full, ty.res_size());
    t.out = advance(s.out, full, ty.out_size());
    alignas(32) int32_t tail[kMR * kNR];
    for (int i = 0; i < mr; ++i)
      for (int j = full; j < ncols; ++j) tail[i * kNR + j - full] = acc[i * kNR + j];
    store_sums(tail, mr, j0 + full, ncols - full, t);
  }
}

// M pixels (rows[0..M)) × the 16 channels of half panel `half`: sums into acc [M][kNR] at channel 16·half. Defined
// twice: with VEX vpdpbusd (AVX-VNNI) and with its EVEX form at 256 bits (AVX-512 VNNI CPUs: the same operation, so
// the tile can run, and be tested, there too); the target attributes keep each to its own encoding.
#define SFT_VNNI256_PASS(NAME, TARGET, DPBUSD)                                                                 \
  template <int M>                                                                                             \
  __attribute__((target(TARGET))) void NAME(const uint8_t* const* rows, const int64_t* toff, int64_t ntaps,    \
                                            int64_t kg, const int8_t* b, int half, int32_t* acc) {             \
    __m256i c0[M], c1[M];                                                                                      \
    _Pragma("GCC unroll 8") for (int i = 0; i < M; ++i) c0[i] = c1[i] = _mm256_setzero_si256();               \
    const int8_t* bp = b + half * 64;                                                                          \
    for (int64_t t = 0; t < ntaps; ++t) {                                                                      \
      const int64_t to = toff[t];                                                                              \
      for (int64_t g = 0; g < kg; ++g, bp += kNR * 4) {                                                        \
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp));                           \
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 32));                      \
        _Pragma("GCC unroll 8") for (int i = 0; i < M; ++i) {                                                  \
          int32_t word;                                                                                        \
          std::memcpy(&word, rows[i] + to + 4 * g, 4);                                                         \
          const __m256i a = _mm256_set1_epi32(word);                                                           \
          c0[i] = DPBUSD(c0[i], a, w0);                                                                        \
          c1[i] = DPBUSD(c1[i], a, w1);                                                                        \
        }                                                                                                      \
      }                                                                                                        \
    }                                                                                                          \
    _Pragma("GCC unroll 8") for (int i = 0; i < M; ++i) {                                                      \
      _mm256_store_si256(reinterpret_cast<__m256i*>(acc + i * kNR + 16 * half), c0[i]);                        \
      _mm256_store_si256(reinterpret_cast<__m256i*>(acc + i * kNR + 16 * half + 8), c1[i]);                    \
    }                                                                                                          \
  }

SFT_VNNI256_PASS(pass_avxvnni, "avx2,avxvnni", _mm256_dpbusd_avx_epi32)
SFT_VNNI256_PASS(pass_vnni256_evex, "avx2,avx512f,avx512vl,avx512vnni", _mm256_dpbusd_epi32)
#undef SFT_VNNI256_PASS

constexpr int kVnni256Pixels = 6;  // pixels per pass: 12 accumulators + 2 weights + 1 broadcast of 16 registers

using Pass = void (*)(const uint8_t* const*, const int64_t*, int64_t, int64_t, const int8_t*, int, int32_t*);
constexpr Pass kPassesVex[kVnni256Pixels] = {pass_avxvnni<1>, pass_avxvnni<2>, pass_avxvnni<3>,
                                             pass_avxvnni<4>, pass_avxvnni<5>, pass_avxvnni<6>};
constexpr Pass kPassesEvex[kVnni256Pixels] = {pass_vnni256_evex<1>, pass_vnni256_evex<2>, pass_vnni256_evex<3>,
                                              pass_vnni256_evex<4>, pass_vnni256_evex<5>, pass_vnni256_evex<6>};

}  // namespace

void tile_avxvnni(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg,
                  const int8_t* b, int64_t j0, int ncols, const Store& s, bool evex) {
  const Pass* passes = evex ? kPassesEvex : kPassesVex;
  alignas(32) int32_t acc[kMR * kNR];
  for (int i0 = 0; i0 < mr; i0 += kVnni256Pixels) {
    const int m = std::min(kVnni256Pixels, mr - i0);
    for (int half = 0; half < 2 && half * 16 < ncols; ++half)
      passes[m - 1](rows + i0, toff, ntaps, kg, b, half, acc + i0 * kNR);
  }
  store_avx2(acc, mr, j0, ncols, s);
}

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
  store_avx2(acc, mr, j0, ncols, s);
}

}  // namespace sft::qconv
