// int8 convs with few output channels (K ≤ 8: an SR network's RGB output conv), pixels in the vector lanes.
//
// The 14-pixel × 32-channel tile (and AMX's 32 × 32 block) puts output channels in the lanes: at K = 3, 29 of every
// 32 multiply-adds are wasted (SFTNet's 64→3 conv at 512²: 26.5 ms against torch.ao's 12.4 on Zen 4). Here each
// vpdpbusd multiplies 16 output pixels' 4 input channels (one 64-byte load of a transposed input row) by one
// output channel's 4 weights (broadcast), so every lane does useful work. Each thread keeps the input rows its
// output rows read, transposed to [channel group][pixel] 4-byte words, in a ring of R·dh rows (L2).
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/narrow.h"
#include "cpu/qconv2d/store_avx512.h"

namespace sft::qconv {

namespace {

// Padded row `src` (Wp pixels × G words of 4 channels) as G rows of Wt words, 16 pixels per gather.
__attribute__((target("avx512f"))) void transpose_row(const uint8_t* src, int64_t Wp, int64_t G, int64_t Wt,
                                                      uint32_t* dst) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(G)));
  for (int64_t w = 0; w < Wp; w += 16) {
    const __mmask16 m = Wp - w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (Wp - w)) - 1u);
    const uint8_t* s = src + w * G * 4;
    for (int64_t g = 0; g < G; ++g)
      _mm512_mask_storeu_epi32(dst + g * Wt + w, m,
                               _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, s + 4 * g, 4));
  }
}

// Output pixels [q0, q0 + 16·NV) (n valid) of one output row, all K channels. xr[t]: tap t's transposed input row
// at the block's first pixel (G rows of Wt words); w: the packed panel [tap][G][32][4].
template <int K, int NV>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void block(const uint32_t* const* xr, int64_t taps,
                                                                           int64_t G, int64_t Wt, const int8_t* w,
                                                                           int n, const NarrowConv& c, int64_t m) {
  __m512i acc[K][NV];
  for (int k = 0; k < K; ++k)
    for (int v = 0; v < NV; ++v) acc[k][v] = _mm512_setzero_si512();
  const int32_t* wd = reinterpret_cast<const int32_t*>(w);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t g = 0; g < G; ++g) {
      const uint32_t* a = xr[t] + g * Wt;
      __m512i av[NV];
      for (int v = 0; v < NV; ++v) av[v] = _mm512_loadu_si512(a + 16 * v);
      const int32_t* wk = wd + (t * G + g) * 32;
      for (int k = 0; k < K; ++k) {
        const __m512i b = _mm512_set1_epi32(wk[k]);
        for (int v = 0; v < NV; ++v) acc[k][v] = _mm512_dpbusd_epi32(acc[k][v], av[v], b);
      }
    }
  // y = (acc − zx·wsum[k])·mult[k] + bias[k] → activation → + residual → float32, or uint8 requantized, 16 pixels
  // at a time; then each pixel's K values are interleaved into the channels_last output.
  alignas(64) float y[K][NV * 16];
  alignas(64) int32_t yq[K][NV * 16];
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lane = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(K));
  for (int k = 0; k < K; ++k) {
    const __m512 mult = _mm512_set1_ps(c.mult[k]), bias = _mm512_set1_ps(c.bias ? c.bias[k] : 0.f);
    const __m512i comp = _mm512_set1_epi32(c.comp[k]);
    for (int v = 0; v < NV; ++v) {
      __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[k][v], comp)), mult, bias);
      if (c.act == kActRelu) f = _mm512_max_ps(f, zero);
      if (c.act == kActLeaky) f = _mm512_mask_mul_ps(f, _mm512_cmp_ps_mask(f, zero, _CMP_LT_OQ), f,
                                                     _mm512_set1_ps(c.slope));
      if (c.act == kActRelu6) f = _mm512_min_ps(_mm512_max_ps(f, zero), _mm512_set1_ps(kRelu6Max));
      if (c.act >= kActSilu) f = act512_wide(f, c.act);
      if (c.res && !c.ty.res_u8) {
        const int live = std::clamp(n - 16 * v, 0, 16);
        const __mmask16 m16 = live >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << live) - 1u);
        f = _mm512_add_ps(f, _mm512_mask_i32gather_ps(zero, m16, lane,
                                                      static_cast<const float*>(c.res) + (m + 16 * v) * K + k, 4));
      } else if (c.res) {  // a uint8 residual: its pixels' bytes dequantized one by one (few channels, cheap)
        alignas(64) float r[16] = {};
        for (int i = 0; i < std::clamp(n - 16 * v, 0, 16); ++i)
          r[i] = residual_at(c.res, true, c.ty.rscale, c.ty.rzp, (m + 16 * v + i) * K + k);
        f = _mm512_add_ps(f, _mm512_load_ps(r));
      }
      if (c.ty.quant) {  // round half to even (the default rounding mode), as the reference's nearbyint
        __m512i q = _mm512_add_epi32(rounded_q(_mm512_mul_ps(f, _mm512_set1_ps(c.ty.inv_out))),
                                     _mm512_set1_epi32(c.ty.zo));
        q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
        _mm512_store_si512(yq[k] + 16 * v, q);
      } else {
        _mm512_store_ps(y[k] + 16 * v, f);
      }
    }
  }
  if (c.ty.quant) {
    uint8_t* o = static_cast<uint8_t*>(c.out) + m * K;
    const uint8_t flip = c.ty.s8 ? 0x80 : 0;  // int8: the uint8 value moved by 128
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < K; ++k) o[i * K + k] = static_cast<uint8_t>(yq[k][i]) ^ flip;
  } else if (c.ty.bf16) {
    uint16_t* o = static_cast<uint16_t*>(c.out) + m * K;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < K; ++k) o[i * K + k] = bf16_bits(y[k][i]);
  } else {
    float* o = static_cast<float*>(c.out) + m * K;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < K; ++k) o[i * K + k] = y[k][i];
  }
}

using BlockFn = void (*)(const uint32_t* const*, int64_t, int64_t, int64_t, const int8_t*, int, const NarrowConv&,
                         int64_t);

// Pixels per block: 16·NV, with K·NV accumulators and NV input vectors within the 32 registers (with 24
// accumulators and 8 input vectors the compiler reloaded each input vector for every output channel).
template <int K>
constexpr int kNV = std::max(1, std::min(8, 24 / (K + 1)));

template <int K>
constexpr BlockFn kBlocks[2] = {block<K, 1>, block<K, kNV<K>>};

BlockFn block_for(int64_t K, bool wide) {
  switch (K) {
    case 1: return kBlocks<1>[wide];
    case 2: return kBlocks<2>[wide];
    case 3: return kBlocks<3>[wide];
    case 4: return kBlocks<4>[wide];
    case 5: return kBlocks<5>[wide];
    case 6: return kBlocks<6>[wide];
    case 7: return kBlocks<7>[wide];
    default: return kBlocks<8>[wide];
  }
}

int block_pixels(int64_t K) {
  static constexpr int px[9] = {0, 16 * kNV<1>, 16 * kNV<2>, 16 * kNV<3>, 16 * kNV<4>,
                                16 * kNV<5>, 16 * kNV<6>, 16 * kNV<7>, 16 * kNV<8>};
  return px[K];
}

}  // namespace

bool narrow_fits(int64_t K, int64_t sw) { return K >= 1 && K <= kNarrowMaxK && sw == 1; }

void run_narrow(const InputRows& in, const NarrowConv& c) {
  const int64_t N = c.N, P = c.P, Q = c.Q, K = c.K, R = c.R, S = c.S, sh = c.sh, dh = c.dh, dw = c.dw;
  const int64_t G = in.Cp / 4, Wp = in.Wp, taps = R * S;
  const int bp = block_pixels(K);
  // Row width in words: every block reads 16·NV words from each tap's start, the last one past Q.
  const int64_t Wt = std::max(Wp, (Q + bp - 1) / bp * bp + (S - 1) * dw);
  const int64_t span = (R - 1) * dh + 1;
  const BlockFn wide = block_for(K, true), narrow = block_for(K, false);
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> row(static_cast<size_t>(Wp * in.Cp));
    // Ring of the last `span` input rows, transposed; slot[i]: which padded row it holds (−1: none).
    std::vector<uint32_t> ring(static_cast<size_t>(span * G * Wt + 16), 0);
    std::vector<int64_t> slot(span, -1);
    std::vector<const uint32_t*> xr(taps);
    int64_t image = -1;
    for (int64_t rr = r0; rr < r1; ++rr) {
      const int64_t n = rr / P, p = rr % P;
      if (n != image) std::fill(slot.begin(), slot.end(), -1), image = n;
      for (int64_t h = p * sh; h < p * sh + span; ++h) {
        if (slot[h % span] == h) continue;
        in.fill(n, h, row.data());
        transpose_row(row.data(), Wp, G, Wt, ring.data() + (h % span) * G * Wt);
        slot[h % span] = h;
      }
      auto at_column = [&](int64_t q) {  // each tap's transposed row from output column q
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            xr[r * S + s] = ring.data() + ((p * sh + r * dh) % span) * G * Wt + q + s * dw;
      };
      for (int64_t q0 = 0; q0 < Q; q0 += bp) {
        const int64_t npx = std::min<int64_t>(bp, Q - q0);
        if (npx == bp) {
          at_column(q0);
          wide(xr.data(), taps, G, Wt, c.w, bp, c, rr * Q + q0);
          continue;
        }
        for (int64_t i = 0; i < npx; i += 16) {  // the row's tail, 16 pixels at a time
          at_column(q0 + i);
          narrow(xr.data(), taps, G, Wt, c.w, static_cast<int>(std::min<int64_t>(16, npx - i)), c, rr * Q + q0 + i);
        }
      }
    }
  });
}

}  // namespace sft::qconv
