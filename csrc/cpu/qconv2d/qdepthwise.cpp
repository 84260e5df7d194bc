// int8 depthwise conv (groups = C, one output channel per input channel): uint8 activations × int8 weights, int32
// sums, the dense int8 conv's requantizing store.
//
// A depthwise conv has no reduction over channels, so the VNNI / AMX dot products (4 or 64 channels deep) do not
// apply: each output channel is a short sum over its own R·S taps. The input is the dense kernel's zero-point-padded
// NHWC copy (float inputs quantized, SFT modulation applied, on the way), so every tap is in bounds and reads a real
// uint8 value; 16 (AVX-512) or 8 (AVX2) channels of a pixel are widened to int32 and multiplied by the taps' weights
// (pre-widened once per call, R·S·K values), and the store takes back zx·Σw once per channel, as the dense kernel
// does. Threads split the output rows.
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/qconv2d/store_avx512.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {

namespace {

// One output row's geometry: the padded input (pitch Wp·Cp per row, Cp per pixel), tap offsets, the widened
// weights [tap][Kp] and where the row's outputs go.
struct Row {
  const uint8_t* x;  // the row's first tap of pixel 0
  int64_t pix_step;  // input bytes between neighbouring output pixels (stride · Cp)
  const int64_t* toff;
  int64_t ntaps;
  const int32_t* w;  // [ntaps][Kp]
  int64_t Kp;
  int64_t Q, K;
  int64_t m0;  // the row's first output pixel (global index)
};

// Any tap count: 16 channels a vector, x widened to int32 and multiplied lane by lane.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void row_avx512(const Row& r, const qconv::Store& s) {
  const qconv::Epi e = qconv::epi_of(s);
  for (int64_t c0 = 0; c0 < r.K; c0 += 16) {
    const __mmask16 m = qconv::tail_mask(static_cast<int>(r.K - c0));
    __m512 mult, bias;
    qconv::channel_consts(s, e, c0, &mult, &bias);
    const __m512i comp = _mm512_loadu_si512(s.comp + c0);
    for (int64_t q = 0; q < r.Q; ++q) {
      const uint8_t* px = r.x + q * r.pix_step + c0;
      __m512i acc = _mm512_setzero_si512();
      for (int64_t t = 0; t < r.ntaps; ++t) {
        const __m512i xv = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(px + r.toff[t])));
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xv, _mm512_loadu_si512(r.w + t * r.Kp + c0)));
      }
      qconv::store16(acc, r.m0 + q, static_cast<int>(c0), m, comp, mult, bias, e);
    }
  }
}

// One tap pair's weights for 32-channel block b as vpmaddwd / vpdpwssd want them: two int16 vectors at d, "lo"
// holding (wa[c], wb[c]) for channels c = 32b + 8l + i and "hi" for c = 32b + 8l + 4 + i (l = 0..3 the 128-bit
// lane, i = 0..3), which is where unpacklo/unpackhi_epi16 of the two taps' widened inputs put them. wb null: the
// pair's second tap is a zero weight (an odd tap count's last).
void put_pair(int16_t* d, const int32_t* wa, const int32_t* wb, int64_t b) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 4; ++l)
      for (int i = 0; i < 4; ++i) {
        const int64_t c = 32 * b + 8 * l + 4 * h + i;
        int16_t* e = d + h * 32 + 8 * l + 2 * i;
        e[0] = static_cast<int16_t>(wa[c]);
        e[1] = wb ? static_cast<int16_t>(wb[c]) : 0;
      }
}

// The taps [t][Kp] paired in order (2j, 2j + 1), pair-major: pair j of block b at (j·nb + b)·64.
std::vector<int16_t> tap_pairs(const int32_t* w, int64_t ntaps, int64_t Kp) {
  const int64_t np = (ntaps + 1) / 2, nb = Kp / 32;
  std::vector<int16_t> out(np * nb * 64);
  for (int64_t j = 0; j < np; ++j)
    for (int64_t b = 0; b < nb; ++b)
      put_pair(&out[(j * nb + b) * 64], w + 2 * j * Kp, 2 * j + 1 < ntaps ? w + (2 * j + 1) * Kp : nullptr, b);
  return out;
}

// NT taps (3×3: 9), 32 channels at a time: two taps' inputs widened to int16 (vpmovzxbw), interleaved
// (unpacklo/hi_epi16) and multiplied pairwise by vpmaddwd: one multiply uop per 32 products, a quarter of the
// int32 path's (vpmulld is two uops per 16). The sums come out in unpack order and are put back by two permutes.
template <int NT>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void row_avx512_pairs(const Row& r, const int16_t* wp,
                                                                            const qconv::Store& s) {
  constexpr int NP = (NT + 1) / 2;
  const qconv::Epi e = qconv::epi_of(s);
  const int64_t nb = r.Kp / 32;
  const __m512i fix0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i fix1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t c0 = 32 * b;
    const __mmask16 m0 = qconv::tail_mask(static_cast<int>(r.K - c0));
    const __mmask16 m1 = r.K - c0 > 16 ? qconv::tail_mask(static_cast<int>(r.K - c0 - 16)) : __mmask16(0);
    __m512 mult0, bias0, mult1, bias1;
    qconv::channel_consts(s, e, c0, &mult0, &bias0);
    qconv::channel_consts(s, e, c0 + 16, &mult1, &bias1);
    const __m512i comp0 = _mm512_loadu_si512(s.comp + c0), comp1 = _mm512_loadu_si512(s.comp + c0 + 16);
    __m512i wlo[NP], whi[NP];
    int64_t to[NT];
    for (int j = 0; j < NP; ++j) {
      wlo[j] = _mm512_loadu_si512(wp + ((j * nb + b) * 2 + 0) * 32);
      whi[j] = _mm512_loadu_si512(wp + ((j * nb + b) * 2 + 1) * 32);
    }
    for (int t = 0; t < NT; ++t) to[t] = r.toff[t] + c0;
    const uint8_t* px = r.x;
    for (int64_t q = 0; q < r.Q; ++q, px += r.pix_step) {
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (int j = 0; j < NP; ++j) {
        const __m512i a = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(px + to[2 * j])));
        const __m512i c = 2 * j + 1 < NT ? _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                                               reinterpret_cast<const __m256i*>(px + to[2 * j + 1])))
                                         : _mm512_setzero_si512();
        lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, c), wlo[j]));
        hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, c), whi[j]));
      }
      qconv::store16(_mm512_permutex2var_epi32(lo, fix0, hi), r.m0 + q, static_cast<int>(c0), m0, comp0, mult0,
                     bias0, e);
      if (m1) qconv::store16(_mm512_permutex2var_epi32(lo, fix1, hi), r.m0 + q, static_cast<int>(c0 + 16), m1, comp1,
                             mult1, bias1, e);
    }
  }
}

// The weights for row_avx512_wide: taps paired within each kernel row (s = 2t, 2t + 1; an odd S's last with a
// zero), block-major: block b, row rr, pair t at ((b·R + rr)·np + t)·64.
std::vector<int16_t> row_tap_pairs(const int32_t* w, int64_t R, int64_t S, int64_t Kp) {
  const int64_t np = (S + 1) / 2, nb = Kp / 32;
  std::vector<int16_t> out(nb * R * np * 64);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t rr = 0; rr < R; ++rr)
      for (int64_t t = 0; t < np; ++t)
        put_pair(&out[((b * R + rr) * np + t) * 64], w + (rr * S + 2 * t) * Kp,
                 2 * t + 1 < S ? w + (rr * S + 2 * t + 1) * Kp : nullptr, b);
  return out;
}

// The sums of P neighbouring output pixels × 32 channels for S-wide kernel rows, stride SW (undilated), as
// unpack-ordered lo / hi halves. Per kernel row, each input pixel the P pixels read is loaded and widened to int16
// once, each neighbouring pair of them interleaved once (unpacklo/hi_epi16), and that pair serves every (pixel, tap
// pair) that reads it: vpdpwssd adds two taps' products per lane. Against row_avx512_pairs, which loads and
// interleaves both taps of every pair for every pixel, that is ~S/2 times fewer loads and shuffles (a 7×7 conv:
// 2.6x oneDNN's time before).
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline __m512i widen(const uint8_t* p) {
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <int P, int S, int SW>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void wide_sums(
    const uint8_t* x, const int64_t* roff, int64_t R, int64_t cp, const int16_t* w, __m512i* lo, __m512i* hi) {
  constexpr int NP = (S + 1) / 2, NX = (P - 1) * SW + S;
  for (int i = 0; i < P; ++i) lo[i] = hi[i] = _mm512_setzero_si512();
  for (int64_t rr = 0; rr < R; ++rr) {
    const uint8_t* xr = x + roff[rr];
    const int16_t* wr = w + rr * NP * 64;
    __m512i wl[NP], wh[NP];
    for (int t = 0; t < NP; ++t) {
      wl[t] = _mm512_loadu_si512(wr + t * 64);
      wh[t] = _mm512_loadu_si512(wr + t * 64 + 32);
    }
    __m512i cur = widen(xr);
#pragma GCC unroll 32
    for (int j = 0; j < NX; ++j) {
      // the pixel past the last one read only meets zero weights (an odd S's padding tap): not loaded
      const __m512i nxt = j + 1 < NX ? widen(xr + (j + 1) * cp) : _mm512_setzero_si512();
      const __m512i ul = _mm512_unpacklo_epi16(cur, nxt), uh = _mm512_unpackhi_epi16(cur, nxt);
#pragma GCC unroll 8
      for (int t = 0; t < NP; ++t) {
        const int d = j - 2 * t;  // pixel d / SW reads this pair as its tap pair t
        if (d >= 0 && d % SW == 0 && d / SW < P) {
          lo[d / SW] = _mm512_dpwssd_epi32(lo[d / SW], ul, wl[t]);
          hi[d / SW] = _mm512_dpwssd_epi32(hi[d / SW], uh, wh[t]);
        }
      }
      cur = nxt;
    }
  }
}

// A 32-channel block's store constants (halves: channels 0-15 and 16-31).
struct BlockConsts {
  __m512 mult[2], bias[2];
  __m512i comp[2];
};

template <int P, int S, int SW>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void wide_pixels(
    const Row& r, const int64_t* roff, int64_t R, int64_t cp, const int16_t* wb, int64_t q, int64_t c0, __mmask16 m0,
    __mmask16 m1, const BlockConsts& k, const qconv::Epi& e) {
  const __m512i fix0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i fix1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  __m512i lo[P], hi[P];
  wide_sums<P, S, SW>(r.x + q * r.pix_step + c0, roff, R, cp, wb, lo, hi);
  for (int i = 0; i < P; ++i) {
    qconv::store16(_mm512_permutex2var_epi32(lo[i], fix0, hi[i]), r.m0 + q + i, static_cast<int>(c0), m0, k.comp[0],
                   k.mult[0], k.bias[0], e);
    if (m1) qconv::store16(_mm512_permutex2var_epi32(lo[i], fix1, hi[i]), r.m0 + q + i, static_cast<int>(c0 + 16), m1,
                           k.comp[1], k.mult[1], k.bias[1], e);
  }
}

template <int S, int SW>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void row_avx512_wide(const Row& r,
                                                                                     const int64_t* roff, int64_t R,
                                                                                     const int16_t* wp,
                                                                                     const qconv::Store& s) {
  constexpr int kP = 8, NP = (S + 1) / 2;
  const qconv::Epi e = qconv::epi_of(s);
  const int64_t nb = r.Kp / 32, cp = r.pix_step / SW;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t c0 = 32 * b;
    const __mmask16 m0 = qconv::tail_mask(static_cast<int>(r.K - c0));
    const __mmask16 m1 = r.K - c0 > 16 ? qconv::tail_mask(static_cast<int>(r.K - c0 - 16)) : __mmask16(0);
    BlockConsts consts;
    qconv::channel_consts(s, e, c0, &consts.mult[0], &consts.bias[0]);
    qconv::channel_consts(s, e, c0 + 16, &consts.mult[1], &consts.bias[1]);
    consts.comp[0] = _mm512_loadu_si512(s.comp + c0);
    consts.comp[1] = _mm512_loadu_si512(s.comp + c0 + 16);
    const int16_t* wb = wp + b * R * NP * 64;
    int64_t q = 0;
    for (; q + kP <= r.Q; q += kP) wide_pixels<kP, S, SW>(r, roff, R, cp, wb, q, c0, m0, m1, consts, e);
    if (q + 7 == r.Q) wide_pixels<7, S, SW>(r, roff, R, cp, wb, q, c0, m0, m1, consts, e), q += 7;  // 7² maps
    if (q + 4 <= r.Q) wide_pixels<4, S, SW>(r, roff, R, cp, wb, q, c0, m0, m1, consts, e), q += 4;  // 6 = 4 + 2 ...
    if (q + 2 <= r.Q) wide_pixels<2, S, SW>(r, roff, R, cp, wb, q, c0, m0, m1, consts, e), q += 2;
    if (q < r.Q) wide_pixels<1, S, SW>(r, roff, R, cp, wb, q, c0, m0, m1, consts, e);
  }
}

template <int S>
void row_wide(const Row& r, int64_t sw, const int64_t* roff, int64_t R, const int16_t* wp, const qconv::Store& s) {
  if (sw == 1)
    row_avx512_wide<S, 1>(r, roff, R, wp, s);
  else
    row_avx512_wide<S, 2>(r, roff, R, wp, s);
}

// 32 channels of one pixel into acc (AVX2: 8 at a time); the portable store writes them.
__attribute__((target("avx2"))) void sums_avx2(const Row& r, const uint8_t* px, int64_t c0, int32_t* acc) {
  for (int h = 0; h < qconv::kNR; h += 8) {
    if (c0 + h >= r.K) break;
    __m256i a = _mm256_setzero_si256();
    for (int64_t t = 0; t < r.ntaps; ++t) {
      const __m256i xv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(px + r.toff[t] + h)));
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.w + t * r.Kp + c0 + h));
      a = _mm256_add_epi32(a, _mm256_mullo_epi32(xv, wv));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + h), a);
  }
}

void sums_generic(const Row& r, const uint8_t* px, int64_t c0, int32_t* acc) {
  const int n = static_cast<int>(std::min<int64_t>(qconv::kNR, r.K - c0));
  for (int j = 0; j < n; ++j) {
    int32_t a = 0;
    for (int64_t t = 0; t < r.ntaps; ++t) a += int32_t(px[r.toff[t] + j]) * r.w[t * r.Kp + c0 + j];
    acc[j] = a;
  }
}

template <void (*Sums)(const Row&, const uint8_t*, int64_t, int32_t*)>
void row_portable(const Row& r, const qconv::Store& base) {
  alignas(64) int32_t acc[qconv::kNR];
  for (int64_t q = 0; q < r.Q; ++q)
    for (int64_t c0 = 0; c0 < r.K; c0 += qconv::kNR) {
      Sums(r, r.x + q * r.pix_step + c0, c0, acc);
      qconv::Store s = base;
      const int64_t m = r.m0 + q;
      s.res = qconv::advance(base.res, m * r.K + c0, base.ty.res_size());
      s.out = qconv::advance(base.out, m * r.K + c0, base.ty.out_size());
      qconv::store_sums(acc, 1, c0, static_cast<int>(std::min<int64_t>(qconv::kNR, r.K - c0)), s);
    }
}

// What the kernels read of the weight, as one int32 buffer: Σw per channel [Kp], the taps widened [R·S][Kp], then
// (layout 1) tap_pairs or (layout 2) row_tap_pairs as int16. Cached per weight: rebuilt per call it took longer
// than the sums of small maps (768 channels 7×7 at 7²: ~0.07 of 0.16 ms).
at::Tensor derived_weights(const at::Tensor& w_q, int64_t Kp, int layout) {
  const int64_t K = w_q.size(0), R = w_q.size(2), S = w_q.size(3), RS = R * S;
  const at::Tensor wc = w_q.contiguous();
  const auto build = [&](const at::Tensor&) {
    std::vector<int32_t> wt(RS * Kp, 0), wsum(Kp, 0);
    const int8_t* wp = wc.data_ptr<int8_t>();
    for (int64_t k = 0; k < K; ++k)
      for (int64_t t = 0; t < RS; ++t) {
        wt[t * Kp + k] = wp[k * RS + t];
        wsum[k] += wp[k * RS + t];
      }
    const std::vector<int16_t> pairs = layout == 2   ? row_tap_pairs(wt.data(), R, S, Kp)
                                       : layout == 1 ? tap_pairs(wt.data(), RS, Kp)
                                                     : std::vector<int16_t>();
    at::Tensor out = at::empty({Kp + RS * Kp + static_cast<int64_t>(pairs.size() + 1) / 2}, at::kInt);
    int32_t* o = out.data_ptr<int32_t>();
    std::memcpy(o, wsum.data(), Kp * 4);
    std::memcpy(o + Kp, wt.data(), RS * Kp * 4);
    std::memcpy(o + Kp + RS * Kp, pairs.data(), pairs.size() * 2);
    return out;
  };
  // The weight cache keys float32 words: the int8 weight's bytes seen as such where they are whole words.
  const at::Tensor flat = wc.reshape({-1});
  if (flat.numel() % 4 != 0) return build(flat);
  return cached_weight_transform(flat.view(at::kFloat), (int64_t(7) << 40) + Kp * 4 + layout, build);
}

}  // namespace

at::Tensor qconv2d_depthwise_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& w_q,
                                 const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                                 double out_scale, int64_t out_zero_point, const c10::optional<at::Tensor>& mod_scale,
                                 const c10::optional<at::Tensor>& mod_shift, c10::optional<at::ScalarType> out_dtype,
                                 double res_scale, int64_t res_zero_point) {
  TORCH_CHECK(x.dim() == 4 && (x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat) && x.device().is_cpu(),
              "sft_cpu::qconv2d_depthwise: input must be a uint8 or float32 [N, C, H, W] CPU tensor");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(w_q.dim() == 4 && w_q.scalar_type() == at::kChar && w_q.size(0) == C && w_q.size(1) == 1,
              "sft_cpu::qconv2d_depthwise: weight must be int8 [C, 1, R, S] for C = ", C,
              " input channels (one output channel each)");
  TORCH_CHECK(w_scale.scalar_type() == at::kFloat && w_scale.numel() == C,
              "sft_cpu::qconv2d_depthwise: w_scale must hold ", C, " float32 scales");
  TORCH_CHECK(x_scale > 0, "sft_cpu::qconv2d_depthwise: x_scale must be positive");
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255,
              "sft_cpu::qconv2d_depthwise: x_zero_point must lie in [0, 255]");
  const qconv::Types ty = qconv::store_types(out_scale, out_zero_point, out_dtype, res_scale, res_zero_point,
                                             "sft_cpu::qconv2d_depthwise");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2 && stride[0] > 0 && stride[1] > 0 &&
                  dilation[0] > 0 && dilation[1] > 0 && padding[0] >= 0 && padding[1] >= 0,
              "sft_cpu::qconv2d_depthwise: stride and dilation must be positive pairs, padding non-negative");
  const int64_t K = C, R = w_q.size(2), S = w_q.size(3);
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::qconv2d_depthwise: the input is too small for the kernel");
  const auto [out, res] = qconv::conv_output(x, N, K, P, Q, ty, residual, "sft_cpu::qconv2d_depthwise");
  if (N == 0 || K == 0) return out;
  const auto [ms, mt] = qconv::modulation_maps(x, x, [](const at::Tensor& t) { return t; }, mod_scale, mod_shift,
                                               "sft_cpu::qconv2d_depthwise");
  const qconv::Mod mod{ms.defined() ? ms.data_ptr<float>() : nullptr, mt.defined() ? mt.data_ptr<float>() : nullptr};

  // Channels rounded up to 32 (whole vectors and the portable store's 32-channel blocks read in bounds).
  const int64_t Kp = (K + qconv::kNR - 1) / qconv::kNR * qconv::kNR, Cp = Kp, RS = R * S;
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  const at::Tensor xp = qconv::padded_input(x, x_scale, x_zero_point, ph, pw, Cp, 0, mod);

  const std::string kern = qconv2d_kernel();
  const bool avx512 = kern == "amx" || kern == "vnni";
  // 3-, 5- and 7-wide undilated kernels at stride 1 or 2: row_avx512_wide (for 3×3 on MobileNetV2's shapes on par
  // with row_avx512_pairs, 0.8-1.25x); other 3×3 ones (dilated): row_avx512_pairs
  const bool wide = avx512 && dw == 1 && (sw == 1 || sw == 2) && (S == 3 || S == 5 || S == 7);
  const int layout = wide ? 2 : avx512 && RS == 9 ? 1 : 0;
  const at::Tensor derived = derived_weights(w_q, Kp, layout);
  const int32_t* wsum = derived.data_ptr<int32_t>();
  const int32_t* wt = wsum + Kp;
  const int16_t* pairs = reinterpret_cast<const int16_t*>(wt + RS * Kp);
  std::vector<int32_t> comp(Kp);
  for (int64_t k = 0; k < Kp; ++k) comp[k] = wsum[k] * static_cast<int32_t>(x_zero_point);
  const auto [mult, bpad] = qconv::channel_constants(w_scale, x_scale, bias, K, Kp, "sft_cpu::qconv2d_depthwise");
  const std::vector<int64_t> toff = qconv::tap_offsets(R, S, dh, dw, Wp, Cp);

  const qconv::Store base{comp.data(), mult.data(), bpad.empty() ? nullptr : bpad.data(), static_cast<int>(activation),
                          static_cast<float>(negative_slope), res.defined() ? res.data_ptr() : nullptr, K,
                          out.data_ptr(), K, ty};
  std::vector<int64_t> roff(R);
  for (int64_t rr = 0; rr < R; ++rr) roff[rr] = toff[rr * S];
  const uint8_t* xb = xp.data_ptr<uint8_t>();
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t rr = r0; rr < r1; ++rr) {
      const int64_t n = rr / P, p = rr % P;
      const Row row{xb + ((n * Hp + p * sh) * Wp) * Cp, sw * Cp, toff.data(), RS, wt, Kp, Q, K, rr * Q};
      if (wide && S == 3)
        row_wide<3>(row, sw, roff.data(), R, pairs, base);
      else if (wide && S == 5)
        row_wide<5>(row, sw, roff.data(), R, pairs, base);
      else if (wide)
        row_wide<7>(row, sw, roff.data(), R, pairs, base);
      else if (avx512 && RS == 9)
        row_avx512_pairs<9>(row, pairs, base);
      else if (avx512)
        row_avx512(row, base);
      else if (kern == "avx2" || kern == "avxvnni")
        row_portable<sums_avx2>(row, base);
      else
        row_portable<sums_generic>(row, base);
    }
  });
  return out;
}

}  // namespace sft
