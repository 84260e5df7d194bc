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
#include "cpu/qconv2d/store_avx512.h"
#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

namespace {

inline float store_value(int32_t acc, int j, const Store& s) {
  const float v = static_cast<float>(acc - s.comp[j]) * s.mult[j] + (s.bias ? s.bias[j] : 0.f);
  return activate(v, s.act, s.slope);
}

template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_vnni_mr(
    const uint8_t* const* rows, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b, int64_t j0,
    int ncols, const Store& s) {
  __m512i acc0[MR], acc1[MR];
  // Unrolled here, or GCC turns this loop into two memset calls (rep stos per tile, 18 % of a 32-channel 1×1
  // conv's tile time) and the accumulators live in memory until the loads that follow.
#pragma GCC unroll 16
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
  const Epi e = epi_of(s);
  const PanelConsts pc = panel_consts(s, e, j0, ncols);
  const __m512i* comp = pc.comp;
  const __m512 *mult = pc.mult, *bias = pc.bias;
  const int halves = pc.halves;
  // Every index a constant (unrolled), so the accumulators stay in registers: a run-time start row had made the
  // compiler keep them in memory too, zeroed with rep stos on every call.
  if (s.ty.quant && ncols == kNR) {
#pragma GCC unroll 16
    for (int i = 0; i + 1 < MR; i += 2)
      store_pair_q8(acc0[i], acc1[i], acc0[i + 1], acc1[i + 1], i, comp, mult, bias, e);
    if (MR % 2) {
      store16(acc0[MR - 1], MR - 1, 0, 0xFFFF, comp[0], mult[0], bias[0], e);
      store16(acc1[MR - 1], MR - 1, 16, 0xFFFF, comp[1], mult[1], bias[1], e);
    }
    return;
  }
  const __mmask16 m0 = tail_mask(ncols), m1 = halves > 1 ? tail_mask(ncols - 16) : __mmask16(0);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    store16(acc0[i], i, 0, m0, comp[0], mult[0], bias[0], e);
    if (halves > 1) store16(acc1[i], i, 16, m1, comp[1], mult[1], bias[1], e);
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
  const Epi e = epi_of(s);
  const PanelConsts pc = panel_consts(s, e, j0, ncols);
  const __m512i* comp = pc.comp;
  const __m512 *mult = pc.mult, *bias = pc.bias;
  const int halves = pc.halves;
  if (s.rows) {  // scattered rows (the AMX block over padded-width rows), skipping the padding
    // The rows that are output pixels, compacted: k-th one's sums at acc row idx[k], its outputs (and residual: the
    // same [pixel][K] layout) at element off[k], so whole panels of uint8 still go out two pixels per store.
    int idx[32];
    int64_t off[32];
    int n = 0;
    for (int i = 0; i < mr; ++i)
      if (s.rows[i] >= 0) {
        idx[n] = i;
        off[n++] = s.rows[i] * s.ldo;
      }
    Epi ef = e;
    ef.pix = off;
    int k0 = 0;
    if (s.ty.quant && ncols == kNR)
      for (; k0 + 1 < n; k0 += 2) {
        const int32_t *a0 = acc + idx[k0] * kNR, *a1 = acc + idx[k0 + 1] * kNR;
        store_pair_q8(_mm512_loadu_si512(a0), _mm512_loadu_si512(a0 + 16), _mm512_loadu_si512(a1),
                      _mm512_loadu_si512(a1 + 16), k0, comp, mult, bias, ef);
      }
    for (int h = 0; h < halves; ++h) {
      const __mmask16 m = tail_mask(ncols - 16 * h);
      for (int k = k0; k < n; ++k)
        store16(_mm512_loadu_si512(acc + idx[k] * kNR + 16 * h), k, 16 * h, m, comp[h], mult[h], bias[h], ef);
    }
    return;
  }
  int i0 = 0;
  if (s.ty.quant && ncols == kNR)
    for (; i0 + 1 < mr; i0 += 2) store_pair_q8(acc, i0, comp, mult, bias, e);
  for (int h = 0; h < halves; ++h) {
    const __mmask16 m = tail_mask(ncols - 16 * h);
    for (int i = i0; i < mr; ++i) store16(_mm512_loadu_si512(acc + i * kNR + 16 * h), i, 16 * h, m, comp[h], mult[h],
                                          bias[h], e);
  }
}

void store_sums(const int32_t* acc, int mr, int64_t j0, int ncols, const Store& s) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < ncols; ++j) {
      float v = store_value(acc[i * kNR + j], int(j0) + j, s);
      if (s.res) v += residual_at(s, i * s.ldr + j);
      write_value(s, i * s.ldo + j, v);
    }
}

void tile_generic(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
                  int64_t j0, int ncols, const Store& s) {
  int32_t acc[kMR * kNR];
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < ncols; ++j) {
      int32_t sum = 0;
      const int8_t* bp = b;
      for (int64_t t = 0; t < ntaps; ++t)
        for (int64_t g = 0; g < kg; ++g, bp += kNR * 4) {
          const uint8_t* a = rows[i] + toff[t] + 4 * g;
          const int8_t* w = bp + j * 4;
          sum += int32_t(a[0]) * w[0] + int32_t(a[1]) * w[1] + int32_t(a[2]) * w[2] + int32_t(a[3]) * w[3];
        }
      acc[i * kNR + j] = sum;
    }
  store_sums(acc, mr, j0, ncols, s);
}

}  // namespace sft::qconv
