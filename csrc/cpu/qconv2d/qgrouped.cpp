// Grouped int8 convs of 4-32 channels per group on AVX-512 VNNI (ResNeXt's and RegNet's 3×3 convs). Run as one
// dense conv per group, a group of 4 channels filled 4 of a 32-channel panel's lanes and one `vpdpbusd` step of its
// K loop (0.2-0.3× torch.ao). Here a vector's 16 lanes are 16 output channels, i.e. 16 / Cg whole groups (Cg < 16)
// or part of one group (Cg ≥ 16); since groups have Cg channels in and out, lane j's inputs are the 4-byte words
// (j / Cg)·Cg / 4 + d (d < Cg / 4) of the same 16 input channels. Per tap and word d: those 16 bytes loaded once and
// spread to the lanes by one `vpermd` (Cg < 16), or the group's word broadcast from memory (Cg ≥ 16), then one
// `vpdpbusd` against the lanes' weights [tap][d][K][4]: 64 multiply-adds, every one of them used.
// The input is the zero-point-padded NHWC copy (qconv2d.cpp), the sums carry zx·Σw like the dense kernel's, and the
// store is the dense kernel's fused requantizing store (store_avx512.h).
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/qconv2d/store_avx512.h"
#include "cpu/runtime/layout.h"

namespace sft {

namespace {

constexpr int kGMR = 12;  // output pixels per tile (accumulators)

struct GroupedConv {
  const int8_t* wp;  // [R·S][Cg/4][K][4]
  const int64_t* toff;
  int64_t ntaps, cg, K;
};

// mr pixels (first taps at rows[i]) × the 16 output channels from c0: sums, then the store. Full: mr = kGMR (the test
// per pixel otherwise, a branch per `vpdpbusd`, had cost as much as the multiplies and kept acc in memory).
template <int CG, bool Full>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void tile(const GroupedConv& g,
                                                                                 const uint8_t* const* rows, int mr,
                                                                                 int64_t c0, __mmask16 m,
                                                                                 const qconv::Store& s,
                                                                                 const qconv::Epi& e) {
  __m512i acc[kGMR];
  constexpr int kWords = CG / 4;  // 4-byte words per group
  const int64_t K = g.K;
  for (int i = 0; i < kGMR; ++i) acc[i] = _mm512_setzero_si512();
  __m512i idx[kWords];  // Cg < 16: lane j takes word (j / CG)·kWords + d of the 16 input bytes
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int d = 0; d < kWords; ++d)
    idx[d] = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_srli_epi32(lane, __builtin_ctz(CG)), _mm512_set1_epi32(kWords)),
                              _mm512_set1_epi32(d));
  const __mmask16 bytes = static_cast<__mmask16>((1u << std::min<int64_t>(16, K - c0)) - 1u);
  const int64_t gbase = c0 / CG * CG;  // Cg ≥ 16: the lanes' group's first channel
  for (int64_t t = 0; t < g.ntaps; ++t) {
    const int64_t to = g.toff[t];
    const int8_t* wt = g.wp + (t * kWords * K + c0) * 4;
    if constexpr (CG < 16) {
      __m512i a[kGMR];
      for (int i = 0; i < kGMR; ++i)
        if (Full || i < mr) a[i] = _mm512_zextsi128_si512(_mm_maskz_loadu_epi8(bytes, rows[i] + to + c0));
      for (int d = 0; d < kWords; ++d) {
        const __m512i w = _mm512_maskz_loadu_epi32(m, wt + d * K * 4);
        for (int i = 0; i < kGMR; ++i)
          if (Full || i < mr) acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_permutexvar_epi32(idx[d], a[i]), w);
      }
    } else {
      for (int d = 0; d < kWords; ++d) {
        const __m512i w = _mm512_loadu_si512(wt + d * K * 4);
        for (int i = 0; i < kGMR; ++i)
          if (Full || i < mr) {
            int32_t word;
            std::memcpy(&word, rows[i] + to + gbase + 4 * d, 4);
            acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(word), w);
          }
      }
    }
  }
  __m512 mult, bias;
  qconv::channel_consts(s, e, c0, &mult, &bias);
  const __m512i comp = _mm512_loadu_si512(s.comp + c0);
#pragma GCC unroll 16
  for (int i = 0; i < (Full ? kGMR : mr); ++i) qconv::store16(acc[i], i, static_cast<int>(c0), m, comp, mult, bias, e);
}

// mr pixels × every output channel: the tiles and the store (Store s at the first pixel, channel 0).
template <int CG>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void pixels(const GroupedConv& g,
                                                                            const uint8_t* const* rows, int mr,
                                                                            const qconv::Store& s) {
  const qconv::Epi e = qconv::epi_of(s);
  for (int64_t c0 = 0; c0 < g.K; c0 += 16) {
    const __mmask16 m = g.K - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (g.K - c0)) - 1u);
    if (mr == kGMR)
      tile<CG, true>(g, rows, mr, c0, m, s, e);
    else
      tile<CG, false>(g, rows, mr, c0, m, s, e);
  }
}

using PixelsFn = void (*)(const GroupedConv&, const uint8_t* const*, int, const qconv::Store&);

}  // namespace

bool qconv2d_grouped_fits(int64_t C, int64_t K, int64_t groups) {
  const int64_t cg = C / groups;
  const std::string k = qconv2d_kernel();
  return groups > 1 && K == C && C % groups == 0 && (cg == 4 || cg == 8 || cg == 16 || cg == 32) &&
         (k == "vnni" || k == "amx");
}

at::Tensor qconv2d_grouped_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                               const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                               int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups, int64_t activation, double negative_slope,
                               const c10::optional<at::Tensor>& residual, double out_scale, int64_t out_zero_point,
                               const c10::optional<at::Tensor>& mod_scale, const c10::optional<at::Tensor>& mod_shift,
                               c10::optional<at::ScalarType> out_dtype, double res_scale, int64_t res_zero_point) {
  constexpr const char* op = "sft_cpu::qconv2d_grouped";
  TORCH_CHECK(x.dim() == 4 && (x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat), op,
              ": x must be uint8 or float32 [N, C, H, W]");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w_scale.size(0);
  TORCH_CHECK(qconv2d_grouped_fits(C, K, groups), op, ": needs K = C and 4, 8, 16 or 32 channels per group on a CPU "
              "with AVX-512 VNNI (use sft_cpu::qconv2d per group otherwise)");
  const int64_t cg = C / groups, RS = R * S;
  TORCH_CHECK(packed.numel() == RS * K * cg && packed.scalar_type() == at::kChar && wsum.numel() == K, op,
              ": packed weights must be int8 [R·S][Cg/4][K][4] with K int32 sums");
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255 && x_scale > 0, op, ": bad input scale or zero point");
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  TORCH_CHECK(P > 0 && Q > 0, op, ": the input is too small for the kernel");
  const qconv::Types ty = qconv::store_types(out_scale, out_zero_point, out_dtype, res_scale, res_zero_point, op);
  const auto [out, res] = qconv::conv_output(x, N, K, P, Q, ty, residual, op);
  if (N == 0 || K == 0) return out;
  const auto [ms, mt] = qconv::modulation_maps(x, x, [](const at::Tensor& t) { return t; }, mod_scale, mod_shift, op);
  const qconv::Mod mod{ms.defined() ? ms.data_ptr<float>() : nullptr, mt.defined() ? mt.data_ptr<float>() : nullptr};
  // 16 bytes past the last pixel: a tile's masked 16-byte loads stay inside the buffer anyway, the slack is cheap
  const at::Tensor xp = qconv::padded_input(x, x_scale, x_zero_point, ph, pw, C, 64, mod);
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  const std::vector<int64_t> toff = qconv::tap_offsets(R, S, dh, dw, Wp, C);
  std::vector<int32_t> comp((K + 15) / 16 * 16, 0);
  const int32_t* ws = wsum.data_ptr<int32_t>();
  for (int64_t k = 0; k < K; ++k) comp[k] = ws[k] * static_cast<int32_t>(x_zero_point);
  const auto cc = qconv::channel_constants(w_scale, x_scale, bias, K, (K + 15) / 16 * 16, op);
  const void* rp = res.defined() ? res.data_ptr() : nullptr;
  const int64_t esize = ty.out_size();
  uint8_t* ob = static_cast<uint8_t*>(out.data_ptr());
  const qconv::Store base{comp.data(), cc.mult.data(), cc.bias.empty() ? nullptr : cc.bias.data(),
                          static_cast<int>(activation), static_cast<float>(negative_slope), nullptr, K, nullptr, K, ty};
  const GroupedConv g{packed.data_ptr<int8_t>(), toff.data(), RS, cg, K};
  const PixelsFn fn = cg == 4 ? pixels<4> : cg == 8 ? pixels<8> : cg == 16 ? pixels<16> : pixels<32>;
  const uint8_t* xb = xp.data_ptr<uint8_t>();
  const int64_t M = N * P * Q, PQ = P * Q;
  at::parallel_for(0, (M + kGMR - 1) / kGMR, 4, [&](int64_t u0, int64_t u1) {
    const uint8_t* rows[kGMR];
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t m0 = u * kGMR;
      const int mr = static_cast<int>(std::min<int64_t>(kGMR, M - m0));
      int64_t n = m0 / PQ, p = m0 % PQ / Q, q = m0 % Q;
      for (int i = 0; i < mr; ++i, next_pixel(n, p, q, P, Q)) rows[i] = xb + ((n * Hp + p * sh) * Wp + q * sw) * C;
      qconv::Store st = base;
      st.out = ob + m0 * K * esize;
      st.res = qconv::advance(rp, m0 * K, ty.res_size());
      fn(g, rows, mr, st);
    }
  });
  return out;
}

}  // namespace sft
