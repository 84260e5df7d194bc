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

// The weights of tap pairs as vpmaddwd wants them: for tap pair j and 32-channel block b, two int16
// vectors, "lo" holding (w[2j][c], w[2j+1][c]) for channels c = 32b + 8l + i and "hi" for c = 32b + 8l + 4 + i
// (l = 0..3 the 128-bit lane, i = 0..3), which is where unpacklo/unpackhi_epi16 of two taps' widened inputs put
// them. An odd last tap pairs with a zero weight.
std::vector<int16_t> tap_pairs(const int32_t* w, int64_t ntaps, int64_t Kp) {
  const int64_t np = (ntaps + 1) / 2, nb = Kp / 32;
  std::vector<int16_t> out(np * nb * 2 * 32, 0);
  for (int64_t j = 0; j < np; ++j)
    for (int64_t b = 0; b < nb; ++b)
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 4; ++l)
          for (int i = 0; i < 4; ++i) {
            const int64_t c = 32 * b + 8 * l + 4 * h + i;
            int16_t* d = &out[((j * nb + b) * 2 + h) * 32 + 8 * l + 2 * i];
            d[0] = static_cast<int16_t>(w[2 * j * Kp + c]);
            d[1] = 2 * j + 1 < ntaps ? static_cast<int16_t>(w[(2 * j + 1) * Kp + c]) : 0;
          }
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

  std::vector<int32_t> wt(RS * Kp, 0), comp(Kp, 0);
  const at::Tensor wc = w_q.contiguous();
  const int8_t* wp = wc.data_ptr<int8_t>();
  for (int64_t k = 0; k < K; ++k) {
    int32_t sum = 0;
    for (int64_t t = 0; t < RS; ++t) {
      wt[t * Kp + k] = wp[k * RS + t];
      sum += wp[k * RS + t];
    }
    comp[k] = sum * static_cast<int32_t>(x_zero_point);
  }
  const auto [mult, bpad] = qconv::channel_constants(w_scale, x_scale, bias, K, Kp, "sft_cpu::qconv2d_depthwise");
  const std::vector<int64_t> toff = qconv::tap_offsets(R, S, dh, dw, Wp, Cp);

  const qconv::Store base{comp.data(), mult.data(), bpad.empty() ? nullptr : bpad.data(), static_cast<int>(activation),
                          static_cast<float>(negative_slope), res.defined() ? res.data_ptr() : nullptr, K,
                          out.data_ptr(), K, ty};
  const std::string kern = qconv2d_kernel();
  const bool avx512 = kern == "amx" || kern == "vnni";
  const std::vector<int16_t> pairs = avx512 && RS == 9 ? tap_pairs(wt.data(), RS, Kp) : std::vector<int16_t>();
  const uint8_t* xb = xp.data_ptr<uint8_t>();
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t rr = r0; rr < r1; ++rr) {
      const int64_t n = rr / P, p = rr % P;
      const Row row{xb + ((n * Hp + p * sh) * Wp) * Cp, sw * Cp, toff.data(), RS, wt.data(), Kp, Q, K, rr * Q};
      if (avx512 && RS == 9)
        row_avx512_pairs<9>(row, pairs.data(), base);
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
