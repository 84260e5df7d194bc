// Grouped convs of few channels per group (ResNeXt's and RegNet's 3×3 convs: 2 to 32 channels in and out per
// group). The implicit GEMM runs such a conv as one GEMM per group with 4-16 output columns and a reduction of
// 9·Cg, far below what its micro-kernel needs (ResNeXt's 128-channel, 32-group conv at 56²: 1.9 GFLOP/s, 0.05×
// oneDNN). Here AVX-512 vectors run over 16 output channels, i.e. 16 / Cg whole groups, as the depthwise path
// does: lane j of the vector at channel c (a multiple of 16) is output channel c + j, whose group's input channels
// are c + j − j mod Cg + ci (ci < Cg) — all inside the same 16 input channels, since groups have Cg channels in
// and out. So each tap loads one input vector per pixel and, per ci, spreads element j − j mod Cg + ci to lane j
// (an in-lane shuffle for Cg = 2 or 4, a permute for 8; for 16 and 32, where a vector's lanes are all in one group,
// a broadcast from memory, folded into the FMA) and
// multiplies it by the taps' weights [R·S][Cg][K]: 9·Cg FMAs per 16 outputs, the conv's own multiply count.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/conv2d/paths.h"
#include "cpu/conv2d/pixels_avx512.h"
#include "cpu/engine/config.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {

namespace {

struct Grouped {
  int64_t xs2, xs3, h, w, k, r, s, sh, sw, ph, pw, dh, dw;
  const float* wt;  // [R·S][Cg][K]
  const float* bias;
  int act;
  float slope;
};

// Lane j of the result: x's element j − j mod CG + ci (CG = 2, 4 or 8; ci < CG, a constant once unrolled).
template <int CG>
__attribute__((target("avx512f"), always_inline)) inline __m512 spread(__m512 x, int ci) {
  if constexpr (CG == 2) {
    return ci == 0 ? _mm512_permute_ps(x, 0xA0) : _mm512_permute_ps(x, 0xF5);
  } else if constexpr (CG == 4) {
    switch (ci) {
      case 0: return _mm512_permute_ps(x, 0x00);
      case 1: return _mm512_permute_ps(x, 0x55);
      case 2: return _mm512_permute_ps(x, 0xAA);
      default: return _mm512_permute_ps(x, 0xFF);
    }
  } else {
    const __m512i idx = _mm512_add_epi32(_mm512_set_epi32(8, 8, 8, 8, 8, 8, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0),
                                         _mm512_set1_epi32(ci));
    return _mm512_permutexvar_ps(idx, x);
  }
}

// P pixels (first taps at columns iw0[0..P) of input row ih0) × 16 output channels at a time, all K channels.
// Interior: every tap of every pixel inside the image. Pixels' taps outside it read as zeros.
template <int CG, int P, bool Interior, bool Wide>
__attribute__((target("avx512f"))) void pixels(const Grouped& g, const float* xn, int64_t ih0, const int64_t* iw0,
                                               float* __restrict d, int64_t ld, const float* res, int64_t rld) {
  const int64_t K = g.k, S = g.s, R = g.r, W = g.w, H = g.h, xs2 = g.xs2, xs3 = g.xs3, dh = g.dh, dw = g.dw;
  const float* __restrict wt = g.wt;
  int64_t xoff[P];
  bool in[P];
  for (int i = 0; i < P; ++i) xoff[i] = iw0[i] * xs3;
  for (int64_t c = 0; c < K; c += 16) {
    const __mmask16 m = K - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - c)) - 1u);
    __m512 acc[P];
    init_pixels<P>(acc, g.bias, c, m);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t ih = ih0 + r * dh;
      if (ih < 0 || ih >= H) continue;
      const float* xr = xn + ih * xs2 + c;
      for (int64_t s = 0; s < S; ++s) {
        const float* xs = xr + s * dw * xs3;
        const float* ws = wt + (r * S + s) * CG * K + c;
        for (int i = 0; i < P; ++i) in[i] = Interior || (iw0[i] + s * dw >= 0 && iw0[i] + s * dw < W);
        if constexpr (CG >= 16) {  // every lane in one group: its input channel ci broadcast from memory
          const float* xg = xs + (c / CG * CG - c);  // the group's first input channel
#pragma GCC unroll 16
          for (int ci = 0; ci < CG; ++ci) {
            const __m512 w = _mm512_maskz_loadu_ps(m, ws + ci * K);
            for (int i = 0; i < P; ++i)
              if (in[i]) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(xg[xoff[i] + ci]), w, acc[i]);
          }
        } else {
          __m512 xv[P];
          for (int i = 0; i < P; ++i) xv[i] = in[i] ? _mm512_maskz_loadu_ps(m, xs + xoff[i]) : _mm512_setzero_ps();
#pragma GCC unroll 8
          for (int ci = 0; ci < CG; ++ci) {
            const __m512 w = _mm512_maskz_loadu_ps(m, ws + ci * K);
            for (int i = 0; i < P; ++i) acc[i] = _mm512_fmadd_ps(spread<CG>(xv[i], ci), w, acc[i]);
          }
        }
      }
    }
    store_pixels<P, false, Wide>(acc, m, c, g.act, g.slope, res, rld, d, ld);
  }
}

// 3-wide kernels, stride SW, undilated, Cg < 16: P pixels' (P − 1)·SW + 3 input columns of a kernel row are loaded
// once and each spread once per ci, then used by every tap that reads them (3 FMAs per spread at stride 1, where
// the loop above spreads per tap: ResNeXt's 8-channel groups were bound by the permutes). Edge: columns outside
// the image read as zeros.
template <int CG, int P, int SW, bool Edge, bool Wide>
__attribute__((target("avx512f"))) void pixels3(const Grouped& g, const float* xn, int64_t ih0, int64_t iw0,
                                                float* __restrict d, int64_t ld, const float* res, int64_t rld) {
  constexpr int kIn = (P - 1) * SW + 3;
  const int64_t K = g.k, R = g.r, H = g.h, xs2 = g.xs2, xs3 = g.xs3, dh = g.dh;
  const float* __restrict wt = g.wt;
  bool inside[kIn];
  for (int j = 0; j < kIn; ++j) inside[j] = !Edge || (iw0 + j >= 0 && iw0 + j < g.w);
  for (int64_t c = 0; c < K; c += 16) {
    const __mmask16 m = K - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - c)) - 1u);
    __m512 acc[P];
    init_pixels<P>(acc, g.bias, c, m);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t ih = ih0 + r * dh;
      if (ih < 0 || ih >= H) continue;
      const float* xr = xn + ih * xs2 + iw0 * xs3 + c;
      __m512 in[kIn];
      for (int j = 0; j < kIn; ++j) in[j] = _mm512_maskz_loadu_ps(inside[j] ? m : __mmask16(0), xr + j * xs3);
      const float* wr = wt + r * 3 * CG * K + c;
#pragma GCC unroll 8
      for (int ci = 0; ci < CG; ++ci) {
        const __m512 w0 = _mm512_maskz_loadu_ps(m, wr + ci * K), w1 = _mm512_maskz_loadu_ps(m, wr + (CG + ci) * K),
                     w2 = _mm512_maskz_loadu_ps(m, wr + (2 * CG + ci) * K);
#pragma GCC unroll 16
        for (int j = 0; j < kIn; ++j) {
          const __m512 v = spread<CG>(in[j], ci);
          // input column j is tap s of output pixel i where j = i·SW + s (constants once unrolled)
#pragma GCC unroll 8
          for (int i = 0; i < P; ++i) {
            if (j == i * SW) acc[i] = _mm512_fmadd_ps(v, w0, acc[i]);
            if (j == i * SW + 1) acc[i] = _mm512_fmadd_ps(v, w1, acc[i]);
            if (j == i * SW + 2) acc[i] = _mm512_fmadd_ps(v, w2, acc[i]);
          }
        }
      }
    }
    store_pixels<P, false, Wide>(acc, m, c, g.act, g.slope, res, rld, d, ld);
  }
}

// The `rows` pixels of output row p from column q0: groups of kP, then one at a time.
// Wide: the activation is one of act512_wide's (store_pixels).
template <int CG, bool Wide>
__attribute__((target("avx512f"))) void row_pixels(const Grouped& g, const float* xn, int64_t p, int64_t q0, int rows,
                                                   float* d, int64_t ld, const float* res, int64_t rld) {
  constexpr int kP = 7;
  const int64_t ih0 = p * g.sh - g.ph, span = (g.s - 1) * g.dw;
  int64_t iw0[kP];
  int i = 0;
  for (; i + kP <= rows; i += kP) {
    for (int k = 0; k < kP; ++k) iw0[k] = (q0 + i + k) * g.sw - g.pw;
    const float* ri = res ? res + i * rld : nullptr;
    const bool interior = iw0[0] >= 0 && iw0[kP - 1] + span < g.w;
    if constexpr (CG < 16) {
      if (g.s == 3 && g.dw == 1 && (g.sw == 1 || g.sw == 2)) {
        if (g.sw == 1)
          interior ? pixels3<CG, kP, 1, false, Wide>(g, xn, ih0, iw0[0], d + i * ld, ld, ri, rld)
                   : pixels3<CG, kP, 1, true, Wide>(g, xn, ih0, iw0[0], d + i * ld, ld, ri, rld);
        else
          interior ? pixels3<CG, kP, 2, false, Wide>(g, xn, ih0, iw0[0], d + i * ld, ld, ri, rld)
                   : pixels3<CG, kP, 2, true, Wide>(g, xn, ih0, iw0[0], d + i * ld, ld, ri, rld);
        continue;
      }
    }
    if (interior)
      pixels<CG, kP, true, Wide>(g, xn, ih0, iw0, d + i * ld, ld, ri, rld);
    else
      pixels<CG, kP, false, Wide>(g, xn, ih0, iw0, d + i * ld, ld, ri, rld);
  }
  for (; i < rows; ++i) {
    iw0[0] = (q0 + i) * g.sw - g.pw;
    pixels<CG, 1, false, Wide>(g, xn, ih0, iw0, d + i * ld, ld, res ? res + i * rld : nullptr, rld);
  }
}

}  // namespace

bool grouped_fits(int64_t C, int64_t K, int64_t groups) {
  const int64_t cg = C / groups;
  return groups > 1 && groups < C && K == C && (cg == 2 || cg == 4 || cg == 8 || cg == 16 || cg == 32) &&
         std::strcmp(ukernel().isa, "avx512") == 0;
}

void conv2d_grouped_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                         const at::Tensor& res, at::Tensor& out) {
  const int64_t K = weight.size(0), cg = weight.size(1), R = weight.size(2), S = weight.size(3);
  // [K, Cg, R, S] → [R·S][Cg][K], cached per weight
  const at::Tensor wt = cached_weight_transform(weight, int64_t(7) << 40, [](const at::Tensor& w) {
    return w.permute({2, 3, 1, 0}).contiguous();
  });
  const float* bias = b.defined() ? b.data_ptr<float>() : nullptr;
  const Grouped g{x.stride(2), x.stride(3), x.size(2),   x.size(3),   K,   R,
                  S,           stride[0],   stride[1],   padding[0],  padding[1],
                  dilation[0], dilation[1], wt.data_ptr<float>(), bias, static_cast<int>(activation),
                  static_cast<float>(slope)};
  // Instantiated without act512_wide where the activation does not need it, whose constants the compiler
  // otherwise hoists into registers these loops need (512 channels in groups of 16 at 14², 1 thread: 0.65 →
  // 0.40 ms; 128 in groups of 16 at 28²: 0.44 → 0.31).
  const bool wide = activation >= kActSilu;
  const auto fn = cg == 2    ? (wide ? row_pixels<2, true> : row_pixels<2, false>)
                  : cg == 4  ? (wide ? row_pixels<4, true> : row_pixels<4, false>)
                  : cg == 8  ? (wide ? row_pixels<8, true> : row_pixels<8, false>)
                  : cg == 16 ? (wide ? row_pixels<16, true> : row_pixels<16, false>)
                             : (wide ? row_pixels<32, true> : row_pixels<32, false>);
  for_each_row_tile(x, res, out, [&](const float* xn, int64_t p, int64_t q0, int rows, float* d, int64_t ld,
                                     const float* r, int64_t rld) { fn(g, xn, p, q0, rows, d, ld, r, rld); });
}

}  // namespace sft
