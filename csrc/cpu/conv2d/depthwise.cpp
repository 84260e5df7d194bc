// Depthwise convs (groups = input channels, any channel multiplier): each output channel reads one input channel,
// so there is no reduction over channels for a GEMM to block. Per output row and tile of pixels, AVX-512 vectors
// run over 16 channels at a time (multiplier 1) summing the R·S taps, with bias, activation and residual in the
// store; a scalar loop handles multipliers and kernels without AVX-512. The same rows feed the fused separable
// conv (csrc/cpu/separable/), which writes them to an L1 buffer instead of the output.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/conv2d/paths.h"
#include "cpu/conv2d/pixels_avx512.h"
#include "cpu/engine/config.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {

namespace {

// P pixels (columns iw0[0..P) of one output row) × 16 channels at a time: P independent accumulators hide the FMA
// latency (one chain per pixel was latency-bound at ~19 GFLOP/s) and each weight vector is loaded once for all
// P pixels. Interior: every tap of every pixel lies inside the image, so the bounds tests go. Wide: the activation
// is one of act512_wide's (store_pixels).
template <int P, bool Interior, bool Wide>
__attribute__((target("avx512f"))) inline void pixels_avx512(const DepthwiseRows& g, const float* xn, int64_t ih0,
                                                             const int64_t* iw0, float* __restrict d, int64_t ld,
                                                             const float* res, int64_t rld) {
  // Locals, not g's fields: stores to d could alias them, and the compiler then reloaded each one per FMA.
  const int64_t C = g.cm, S = g.s, R = g.r, W = g.w, H = g.h, xs2 = g.xs2, xs3 = g.xs3, dh = g.dh, dw = g.dw;
  const int64_t sstep = dw * xs3;
  const float* __restrict wt = g.wt;
  const float* __restrict bias = g.bias;
  const int act = g.act;
  const float slope = g.slope;
  int64_t xoff[P], s_lo[P], s_hi[P];  // per pixel: its first tap's offset and the taps inside the image
  for (int i = 0; i < P; ++i) {
    xoff[i] = iw0[i] * xs3;
    s_lo[i] = Interior ? 0 : std::min<int64_t>(S, iw0[i] >= 0 ? 0 : (-iw0[i] + dw - 1) / dw);
    s_hi[i] = Interior ? S : std::max<int64_t>(s_lo[i], std::min<int64_t>(S, (W - iw0[i] + dw - 1) / dw));
  }
  for (int64_t c = 0; c < C; c += 16) {
    const __mmask16 m = C - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (C - c)) - 1u);
    __m512 acc[P];
    init_pixels<P>(acc, bias, c, m);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t ih = ih0 + r * dh;
      if (ih < 0 || ih >= H) continue;
      const float* xr = xn + ih * xs2 + c;
      const float* wr = wt + r * S * C + c;
      for (int64_t s = 0; s < S; ++s) {
        const __m512 w = _mm512_maskz_loadu_ps(m, wr + s * C);
        const float* xs = xr + s * sstep;
        for (int i = 0; i < P; ++i)
          if (Interior || (s >= s_lo[i] && s < s_hi[i]))
            acc[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xs + xoff[i]), w, acc[i]);
      }
    }
    store_pixels<P, false, Wide>(acc, m, c, act, slope, res, rld, d, ld);
  }
}

template <int P, int S, int SW, bool Edge, bool Full, bool Wide>
__attribute__((target("avx512f"), always_inline)) inline void group_avx512(const DepthwiseRows& g, const float* xn,
                                                                           int64_t ih0, int64_t iw0, const bool* inside,
                                                                           int64_t c, __mmask16 m, float* d, int64_t ld,
                                                                           const float* res, int64_t rld) {
  constexpr int kIn = (P - 1) * SW + S;
  const int64_t C = g.cm, R = g.r, H = g.h, xs2 = g.xs2, xs3 = g.xs3, dh = g.dh;
  __m512 acc[P];
  init_pixels<P, Full>(acc, g.bias, c, m);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t ih = ih0 + r * dh;
    if (ih < 0 || ih >= H) continue;
    const float* xr = xn + ih * xs2 + iw0 * xs3 + c;
    const float* wr = g.wt + r * S * C + c;
    __m512 w[S];
    for (int s = 0; s < S; ++s) w[s] = load16<Full>(wr + s * C, m);
    // Each input vector is loaded once and fed at once to the (up to S) sums that read it, so only the P sums, S weights and one input are live; holding all kIn inputs (7 wide
    // at stride 2: 19) had spilled sums and offsets to the stack. One pointer steps by a pixel (an address
    // register per input ran out of registers). 64 channels at 64², 3×3, 1 thread, data in L2: 86-111 → 68-94 µs.
    const float* xj = xr;
#pragma GCC unroll 64
    for (int j = 0; j < kIn; ++j, xj += xs3) {
      __m512 v = Edge ? _mm512_maskz_loadu_ps(inside[j] ? m : __mmask16(0), xj) : load16<Full>(xj, m);
      asm("" : "+v"(v));  // one load per input: GCC otherwise folds it into each of its S FMAs (S loads)
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) {
        const int d = j - s;  // input j is tap s of pixel d / SW
        if (d >= 0 && d % SW == 0 && d / SW < P) acc[d / SW] = _mm512_fmadd_ps(v, w[s], acc[d / SW]);
      }
    }
  }
  store_pixels<P, Full, Wide>(acc, m, c, g.act, g.slope, res, rld, d, ld);
}

// P pixels of S-wide kernels (3, 5, 7), stride SW, undilated: the input vectors of a row (P pixels need
// (P−1)·SW + S of them) are loaded once each and reused by every tap that reads them, instead of one load per tap
// and pixel (the general loop above ran at ~30 GFLOP/s on 128 channels, load-bound; 7×7 on 96 channels at 56²:
// 41 GFLOP/s against oneDNN's 66). Edge: columns outside the image read as zeros (narrow rows, MobileNet's 7 and
// 14 pixels, have no interior group of P). Whole groups of 16 channels run without masks (masked loads had put a
// kmovw on an FMA port per load).
template <int P, int S, int SW, bool Edge, bool Wide>
__attribute__((target("avx512f"))) inline void pixels_wide_avx512(const DepthwiseRows& g, const float* xn,
                                                                  int64_t ih0, int64_t iw0, float* __restrict d,
                                                                  int64_t ld, const float* res, int64_t rld) {
  constexpr int kIn = (P - 1) * SW + S;
  bool inside[kIn];
  for (int j = 0; j < kIn; ++j) inside[j] = !Edge || (iw0 + j >= 0 && iw0 + j < g.w);
  const int64_t C = g.cm, full = C / 16 * 16;
  for (int64_t c = 0; c < full; c += 16)
    group_avx512<P, S, SW, Edge, true, Wide>(g, xn, ih0, iw0, inside, c, __mmask16(0xFFFF), d, ld, res, rld);
  if (full < C)
    group_avx512<P, S, SW, Edge, false, Wide>(g, xn, ih0, iw0, inside, full, __mmask16((1u << (C - full)) - 1u), d,
                                              ld, res, rld);
}

template <int P, int S, bool Wide>
__attribute__((target("avx512f"))) inline void pixels_wide_any(const DepthwiseRows& g, const float* xn, int64_t ih0,
                                                               int64_t iw0, bool interior, float* d, int64_t ld,
                                                               const float* res, int64_t rld) {
  if (interior && g.sw == 1)
    pixels_wide_avx512<P, S, 1, false, Wide>(g, xn, ih0, iw0, d, ld, res, rld);
  else if (interior)
    pixels_wide_avx512<P, S, 2, false, Wide>(g, xn, ih0, iw0, d, ld, res, rld);
  else if (g.sw == 1)
    pixels_wide_avx512<P, S, 1, true, Wide>(g, xn, ih0, iw0, d, ld, res, rld);
  else
    pixels_wide_avx512<P, S, 2, true, Wide>(g, xn, ih0, iw0, d, ld, res, rld);
}

template <bool Wide>
__attribute__((target("avx512f"))) void rows_avx512(const DepthwiseRows& g, const float* xn, int64_t p, int64_t q0,
                                                    int rows, float* d, int64_t ld, const float* res, int64_t rld) {
  constexpr int kP = 7;  // 14-pixel GEMM tiles (the fused separable conv) are two groups
  const int64_t ih0 = p * g.sh - g.ph, span = (g.s - 1) * g.dw;
  int64_t iw0[kP];
  int i = 0;
  for (; i + kP <= rows; i += kP) {
    for (int k = 0; k < kP; ++k) iw0[k] = (q0 + i + k) * g.sw - g.pw;
    const bool interior = iw0[0] >= 0 && iw0[kP - 1] + span < g.w;
    const float* ri = res ? res + i * rld : nullptr;
    const bool wide = g.dw == 1 && (g.sw == 1 || g.sw == 2);
    if (wide && g.s == 3)
      pixels_wide_any<kP, 3, Wide>(g, xn, ih0, iw0[0], interior, d + i * ld, ld, ri, rld);
    else if (wide && g.s == 5)
      pixels_wide_any<kP, 5, Wide>(g, xn, ih0, iw0[0], interior, d + i * ld, ld, ri, rld);
    else if (wide && g.s == 7)
      pixels_wide_any<kP, 7, Wide>(g, xn, ih0, iw0[0], interior, d + i * ld, ld, ri, rld);
    else if (interior)
      pixels_avx512<kP, true, Wide>(g, xn, ih0, iw0, d + i * ld, ld, ri, rld);
    else
      pixels_avx512<kP, false, Wide>(g, xn, ih0, iw0, d + i * ld, ld, ri, rld);
  }
  for (; i < rows; ++i) {
    iw0[0] = (q0 + i) * g.sw - g.pw;
    pixels_avx512<1, false, Wide>(g, xn, ih0, iw0, d + i * ld, ld, res ? res + i * rld : nullptr, rld);
  }
}

void rows_scalar(const DepthwiseRows& g, const float* xn, int64_t p, int64_t q0, int rows, float* d, int64_t ld,
                 const float* res, int64_t rld) {
  const int64_t ih0 = p * g.sh - g.ph, mult = g.cm / g.c;
  for (int i = 0; i < rows; ++i) {
    const int64_t iw0 = (q0 + i) * g.sw - g.pw;
    for (int64_t o = 0; o < g.cm; ++o) {
      float acc = g.bias ? g.bias[o] : 0.f;
      const float* xc = xn + (o / mult) * g.xs1;
      for (int64_t r = 0; r < g.r; ++r) {
        const int64_t ih = ih0 + r * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t s = 0; s < g.s; ++s) {
          const int64_t iw = iw0 + s * g.dw;
          if (iw >= 0 && iw < g.w) acc += xc[ih * g.xs2 + iw * g.xs3] * g.wt[(r * g.s + s) * g.cm + o];
        }
      }
      acc = activate(acc, g.act, g.slope);
      d[i * ld + o] = res ? acc + res[i * rld + o] : acc;
    }
  }
}

}  // namespace

DepthwiseRows depthwise_rows_setup(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& wt,
                                   const float* bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int act, float slope, bool avx512) {
  return depthwise_rows_setup({x.size(1), x.size(2), x.size(3), x.stride(1), x.stride(2), x.stride(3)}, weight, wt,
                              bias, stride, padding, dilation, act, slope, avx512);
}

DepthwiseRows depthwise_rows_setup(const MapDims& x, const at::Tensor& weight, const at::Tensor& wt,
                                   const float* bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int act, float slope, bool avx512) {
  DepthwiseRows g;
  g.xs1 = x.s1, g.xs2 = x.s2, g.xs3 = x.s3, g.h = x.h, g.w = x.w;
  g.c = x.c, g.cm = weight.size(0), g.r = weight.size(2), g.s = weight.size(3);
  g.sh = stride[0], g.sw = stride[1], g.ph = padding[0], g.pw = padding[1], g.dh = dilation[0], g.dw = dilation[1];
  g.wt = wt.data_ptr<float>(), g.bias = bias, g.act = act, g.slope = slope;
  g.vector = avx512 && g.cm == g.c && x.s1 == 1;
  return g;
}

void depthwise_rows(const DepthwiseRows& g, const float* xn, int64_t p, int64_t q0, int rows, float* d, int64_t ld,
                    const float* res, int64_t rld) {
  // Instantiated without act512_wide where the activation does not need it: the compiler otherwise hoists its
  // constants into registers these loops need.
  if (g.vector && g.act >= kActSilu)
    rows_avx512<true>(g, xn, p, q0, rows, d, ld, res, rld);
  else if (g.vector)
    rows_avx512<false>(g, xn, p, q0, rows, d, ld, res, rld);
  else
    rows_scalar(g, xn, p, q0, rows, d, ld, res, rld);
}

at::Tensor depthwise_weight_taps(const at::Tensor& weight) {
  // Cached per weight: rebuilt on every call it was a copy of 6-19 µs per layer (MobileNetV2: ~0.15 ms a forward).
  return cached_weight_transform(weight, int64_t(2) << 40, [](const at::Tensor& w) {
    return w.reshape({w.size(0), w.size(2) * w.size(3)}).t().contiguous();
  });
}

void conv2d_depthwise_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                           const at::Tensor& res, at::Tensor& out) {
  const at::Tensor wt = depthwise_weight_taps(weight);
  const DepthwiseRows g = depthwise_rows_setup(x, weight, wt, b.defined() ? b.data_ptr<float>() : nullptr, stride,
                                               padding, dilation, static_cast<int>(activation),
                                               static_cast<float>(slope), std::strcmp(ukernel().isa, "avx512") == 0);
  for_each_row_tile(x, res, out, [&](const float* xn, int64_t p, int64_t q0, int rows, float* d, int64_t ld,
                                     const float* r, int64_t rld) {
    depthwise_rows(g, xn, p, q0, rows, d, ld, r, rld);
  });
}

}  // namespace sft
