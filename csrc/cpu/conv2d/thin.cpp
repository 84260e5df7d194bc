// Direct convs for a CNN's thin ends, where the implicit GEMM's 14×32 register tile is mostly empty:
//   few outputs (K ≤ 4, e.g. SFTNet's 64→3 output conv): vectors run along the input channels (dot products,
//     8 pixels × K accumulators, one horizontal sum per output);
//   few inputs  (1×1 convs on < 64 channels, not a multiple of 8; C ≤ 4 convs the stacked-rows path cannot take,
//     i.e. with a residual that is not channels-last): vectors run along the output channels, input values are
//     broadcast (6 pixels × 4 vectors of 16 outputs), read straight from the input with no packing.
// AVX-512 only (chosen at run time); other ISAs keep the GEMM path. Input channels-last (unit channel stride);
// out/res: any strides. Taps outside the image read a zero row, so borders need no separate code.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/act_vec.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {
namespace {

// Predictive commoning would carry broadcast values between k steps in registers where neighbouring pixels'
// input runs overlap, and spill the accumulators to make room for them.
#define SFT_AVX512 __attribute__((target("avx512f,fma"), optimize("no-predictive-commoning")))

struct ThinConv {
  const float* x;
  int64_t xs0, xs2, xs3;  // input strides (n, h, w); channel stride 1
  int64_t H, W, C, K, R, S, P, Q, sh, sw, ph, pw, dh, dw;
  const float* w;  // few-K: [K][R·S][C]; few-C: [R·S][C][K]
  const float* zeros;  // a zero row of max(C, K) floats
  float* out;
  int64_t os[4];
  const float* res;
  int64_t rs[4];
  const float* bias;
  int act;
  float slope;
};

inline const float* tap(const ThinConv& t, int64_t n, int64_t p, int64_t q, int64_t r, int64_t s) {
  const int64_t ih = p * t.sh - t.ph + r * t.dh, iw = q * t.sw - t.pw + s * t.dw;
  if (q >= t.Q || ih < 0 || ih >= t.H || iw < 0 || iw >= t.W) return t.zeros;
  return t.x + n * t.xs0 + ih * t.xs2 + iw * t.xs3;
}

// The PB pixels' input rows for tap (r, s): one bounds check when the whole block is inside the image.
template <int PB>
inline void tap_rows(const ThinConv& t, int64_t n, int64_t p, int64_t q0, int64_t r, int64_t s, const float** px) {
  const int64_t ih = p * t.sh - t.ph + r * t.dh, iw0 = q0 * t.sw - t.pw + s * t.dw;
  const int64_t iw1 = iw0 + (PB - 1) * t.sw;
  if (ih >= 0 && ih < t.H && iw0 >= 0 && iw1 < t.W && q0 + PB <= t.Q) {
    const float* base = t.x + n * t.xs0 + ih * t.xs2 + iw0 * t.xs3;
    for (int i = 0; i < PB; ++i) px[i] = base + i * t.sw * t.xs3;
  } else {
    for (int i = 0; i < PB; ++i) px[i] = tap(t, n, p, q0 + i, r, s);
  }
}

inline void finish(const ThinConv& t, int64_t n, int64_t p, int64_t q, int64_t k, float v) {
  v += t.bias ? t.bias[k] : 0.f;
  v = activate(v, t.act, t.slope);
  if (t.res) v += t.res[n * t.rs[0] + k * t.rs[1] + p * t.rs[2] + q * t.rs[3]];
  t.out[n * t.os[0] + k * t.os[1] + p * t.os[2] + q * t.os[3]] = v;
}

// One output row (n, p), PB pixels at a time; K outputs each.
template <int K, int PB>
SFT_AVX512 void few_k_row(const ThinConv& t, int64_t n, int64_t p) {
  const int64_t taps = t.R * t.S;
  for (int64_t q0 = 0; q0 < t.Q; q0 += PB) {
    __m512 acc[PB][K];
    for (int i = 0; i < PB; ++i)
      for (int k = 0; k < K; ++k) acc[i][k] = _mm512_setzero_ps();
    for (int64_t r = 0; r < t.R; ++r)
      for (int64_t s = 0; s < t.S; ++s) {
        const float* px[PB];
        tap_rows<PB>(t, n, p, q0, r, s, px);
        const float* wt = t.w + (r * t.S + s) * t.C;
        for (int64_t c = 0; c < t.C; c += 16) {
          __m512 wv[K];
          for (int k = 0; k < K; ++k) wv[k] = _mm512_loadu_ps(wt + k * taps * t.C + c);
          for (int i = 0; i < PB; ++i) {
            const __m512 xv = _mm512_loadu_ps(px[i] + c);
            for (int k = 0; k < K; ++k) acc[i][k] = _mm512_fmadd_ps(xv, wv[k], acc[i][k]);
          }
        }
      }
    for (int i = 0; i < PB && q0 + i < t.Q; ++i)
      for (int k = 0; k < K; ++k) finish(t, n, p, q0 + i, k, _mm512_reduce_add_ps(acc[i][k]));
  }
}

// Writes pixels [q0, q0 + np) × channels [k0, k0 + 16·NV) of row (n, p) from tile[i][16·NV] with the epilogue.
// Out of line so that its constants do not take zmm registers from the accumulators of the loops above.
template <int NV>
__attribute__((noinline, target("avx512f,fma"))) void few_c_store(const ThinConv& t, int64_t n, int64_t p,
                                                                 int64_t k0, int64_t q0, int64_t np,
                                                                 const float* tile) {
  if (t.os[1] != 1 || (t.res && t.rs[1] != 1)) {
    for (int64_t i = 0; i < np; ++i)
      for (int j = 0; j < 16 * NV; ++j) finish(t, n, p, q0 + i, k0 + j, tile[i * 16 * NV + j]);
    return;
  }
  // channels-last: the epilogue in vectors. NaN compares false in the mask: it stays NaN, as in activate().
  const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(t.slope);
  for (int64_t i = 0; i < np; ++i) {
    float* o = t.out + n * t.os[0] + p * t.os[2] + (q0 + i) * t.os[3] + k0;
    const float* rr = t.res ? t.res + n * t.rs[0] + p * t.rs[2] + (q0 + i) * t.rs[3] + k0 : nullptr;
    for (int v = 0; v < NV; ++v) {
      __m512 y = _mm512_load_ps(tile + i * 16 * NV + 16 * v);
      if (t.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(t.bias + k0 + 16 * v));
      if (t.act >= kActSilu) {
        y = act512_wide(y, t.act);
      } else if (t.act != kActNone) {
        const __mmask16 neg = _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ);
        y = _mm512_mask_blend_ps(neg, y, t.act == kActLeaky ? _mm512_mul_ps(y, slope) : zero);
        if (t.act == kActRelu6) y = _mm512_min_ps(_mm512_set1_ps(kRelu6Max), y);  // NaN (second operand) stays
      }
      if (rr) y = _mm512_add_ps(y, _mm512_loadu_ps(rr + 16 * v));
      _mm512_storeu_ps(o + 16 * v, y);
    }
  }
}

// Output row (n, p), channels [k0, k0 + 16·NV): PB pixels × NV vectors per block, per tap bounds-checked rows.
template <int NV, int PB>
SFT_AVX512 void few_c_row(const ThinConv& t, int64_t n, int64_t p, int64_t k0) {
  for (int64_t q0 = 0; q0 < t.Q; q0 += PB) {
    __m512 acc[PB][NV];
    for (int i = 0; i < PB; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    for (int64_t r = 0; r < t.R; ++r)
      for (int64_t s = 0; s < t.S; ++s) {
        const float* px[PB];
        tap_rows<PB>(t, n, p, q0, r, s, px);
        const float* wt = t.w + (r * t.S + s) * t.C * t.K + k0;
        for (int64_t c = 0; c < t.C; ++c) {
          __m512 wv[NV];
          for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(wt + c * t.K + 16 * v);
          for (int i = 0; i < PB; ++i) {
            const __m512 xv = _mm512_set1_ps(px[i][c]);
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(xv, wv[v], acc[i][v]);
          }
        }
      }
    alignas(64) float tile[PB][16 * NV];
    for (int i = 0; i < PB; ++i)
      for (int v = 0; v < NV; ++v) _mm512_store_ps(&tile[i][16 * v], acc[i][v]);
    few_c_store<NV>(t, n, p, k0, q0, std::min<int64_t>(PB, t.Q - q0), &tile[0][0]);
  }
}

}  // namespace

// out = act(conv(x, w) + b) + res; x has unit channel stride; what it takes: thin_ok in select.cpp.
void conv2d_thin_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out) {
  ThinConv t{};
  const int64_t N = x.size(0);
  t.H = x.size(2), t.W = x.size(3), t.C = x.size(1), t.K = weight.size(0), t.R = weight.size(2), t.S = weight.size(3);
  t.P = out.size(2), t.Q = out.size(3);
  t.sh = stride[0], t.sw = stride[1], t.ph = padding[0], t.pw = padding[1], t.dh = dilation[0], t.dw = dilation[1];
  t.x = x.data_ptr<float>();
  t.xs0 = x.stride(0), t.xs2 = x.stride(2), t.xs3 = x.stride(3);
  const bool few_k = t.K <= 4;
  // few-K: [K][R][S][C]; few-C: [R][S][C][K]; laid out once per weight, like the other paths' packings
  const at::Tensor wl = cached_weight_transform(weight, (int64_t(1) << 40) + few_k, [&](const at::Tensor& wc) {
    return few_k ? wc.permute({0, 2, 3, 1}).contiguous() : wc.permute({2, 3, 1, 0}).contiguous();
  });
  t.w = wl.data_ptr<float>();
  const at::Tensor zeros = at::zeros({std::max(t.C, t.K) + 16}, x.options());
  t.zeros = zeros.data_ptr<float>();
  t.out = out.data_ptr<float>();
  for (int d = 0; d < 4; ++d) t.os[d] = out.stride(d);
  if (res.defined()) {
    t.res = res.data_ptr<float>();
    for (int d = 0; d < 4; ++d) t.rs[d] = res.stride(d);
  }
  t.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  t.act = static_cast<int>(activation);
  t.slope = static_cast<float>(slope);
  const int64_t kblocks = few_k ? 1 : (t.K + kThinFewCChannels - 1) / kThinFewCChannels;
  at::parallel_for(0, N * t.P * kblocks, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t n = i / (t.P * kblocks), p = (i / kblocks) % t.P, kb = i % kblocks;
      if (few_k) {
        switch (t.K) {
          case 1: few_k_row<1, kThinFewKPixels[1]>(t, n, p); break;
          case 2: few_k_row<2, kThinFewKPixels[2]>(t, n, p); break;
          case 3: few_k_row<3, kThinFewKPixels[3]>(t, n, p); break;
          default: few_k_row<4, kThinFewKPixels[4]>(t, n, p); break;
        }
      } else {
        const int64_t k0 = kb * kThinFewCChannels, nv = std::min<int64_t>(kThinFewCChannels, t.K - k0) / 16;
        switch (nv) {
          case 1: few_c_row<1, kThinFewCPixels[1]>(t, n, p, k0); break;
          case 2: few_c_row<2, kThinFewCPixels[2]>(t, n, p, k0); break;
          case 3: few_c_row<3, kThinFewCPixels[3]>(t, n, p, k0); break;
          default: few_c_row<4, kThinFewCPixels[4]>(t, n, p, k0); break;
        }
      }
    }
  });
}

}  // namespace sft
