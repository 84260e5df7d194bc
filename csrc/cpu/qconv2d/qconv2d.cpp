// int8 direct conv: uint8 activations × int8 weights summed in int32, requantized in the store.
//
// The input is laid out once as a zero-point-padded NHWC copy with channels rounded up to 4 (1 byte per value, a
// quarter of a float copy): a pixel's 4 consecutive channels are one 32-bit word, so a tile of 14 output pixels
// reads its taps in place, row i's tap t at rows[i] + toff[t]. AVX-512 VNNI's vpdpbusd multiplies 4 u8·s8 pairs and
// adds them into each int32 lane; the weights are packed [K/32][tap][C/4][32 channels][4] so one tap's 4 channels
// for 32 output channels are two 64-byte vectors, and a 14×32 tile keeps 28 int32 accumulators in registers.
// Padding holds the zero point zx, so every tap reads (x − zx)·w + zx·w, and the zx·Σw the sums carry is taken
// back once in the store (wsum, from the packing), as oneDNN and XNNPACK do. Then
//   y = (acc − zx·wsum[k]) · x_scale·w_scale[k] + bias[k] → activation → + residual → float32, or uint8 requantized.
// Without VNNI (or with SFT_KERNELS_ISA forcing another kernel set) a portable loop runs the same layout.
#include "cpu/qconv2d/qconv2d.h"

#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "cpu/engine/isa.h"
#include "cpu/engine/ukernel.h"

namespace sft {

namespace {

constexpr int kNR = 32, kMR = 14;

struct QStore {
  const int32_t* comp;  // zx·wsum[k], padded to the panels' width
  const float* mult;    // x_scale·w_scale[k]
  const float* bias;    // or null
  int act;
  float slope;
  const float* res;  // residual rows (pitch ldr), or null
  int64_t ldr;
  float inv_out;  // 1 / out_scale (quantized output)
  int zo;
  bool quant;
  void* out;  // float or uint8 rows of pitch ldo (elements)
  int64_t ldo;
};

inline float store_value(int32_t acc, int j, const QStore& s, const float* res_row) {
  float v = static_cast<float>(acc - s.comp[j]) * s.mult[j] + (s.bias ? s.bias[j] : 0.f);
  v = activate(v, s.act, s.slope);
  return res_row ? v + res_row[j] : v;
}

// The portable kernel: the same packed layout, one output at a time.
void tile_generic(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg,
                  const int8_t* b, int64_t j0, int ncols, const QStore& s) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < ncols; ++j) {
      int32_t acc = 0;
      const int8_t* bp = b;
      for (int64_t t = 0; t < ntaps; ++t)
        for (int64_t g = 0; g < kg; ++g, bp += kNR * 4) {
          const uint8_t* a = rows[i] + toff[t] + 4 * g;
          const int8_t* w = bp + j * 4;
          acc += int32_t(a[0]) * w[0] + int32_t(a[1]) * w[1] + int32_t(a[2]) * w[2] + int32_t(a[3]) * w[3];
        }
      const float* rr = s.res ? s.res + i * s.ldr : nullptr;
      const float v = store_value(acc, int(j0) + j, s, rr ? rr - j0 : nullptr);
      if (s.quant) {
        const float q = std::nearbyint(v * s.inv_out) + float(s.zo);
        static_cast<uint8_t*>(s.out)[i * s.ldo + j] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, q)));
      } else {
        static_cast<float*>(s.out)[i * s.ldo + j] = v;
      }
    }
}

template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_vnni(
    const uint8_t* const* rows, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b, int64_t j0,
    int ncols, const QStore& s) {
  __m512i acc0[MR], acc1[MR];
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
  const __m512 zero = _mm512_setzero_ps();
  for (int h = 0; h < 2; ++h) {
    const int c0 = h * 16;
    if (c0 >= ncols) break;
    const __mmask16 m = ncols - c0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (ncols - c0)) - 1u);
    const int64_t jj = j0 + c0;
    const __m512i comp = _mm512_loadu_si512(s.comp + jj);
    const __m512 mult = _mm512_loadu_ps(s.mult + jj);
    const __m512 bias = s.bias ? _mm512_maskz_loadu_ps(m, s.bias + jj) : zero;
    for (int i = 0; i < MR; ++i) {
      const __m512i a = h ? acc1[i] : acc0[i];
      __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, comp)), mult, bias);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      if (s.act == kActRelu) v = _mm512_mask_mov_ps(v, neg, zero);
      if (s.act == kActLeaky) v = _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(s.slope));
      if (s.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, s.res + i * s.ldr + c0));
      if (s.quant) {
        __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(s.inv_out))),
                                     _mm512_set1_epi32(s.zo));
        q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
        _mm512_mask_cvtepi32_storeu_epi8(static_cast<uint8_t*>(s.out) + i * s.ldo + c0, m, q);
      } else {
        _mm512_mask_storeu_ps(static_cast<float*>(s.out) + i * s.ldo + c0, m, v);
      }
    }
  }
}

using TileFn = void (*)(const uint8_t* const*, const int64_t*, int64_t, int64_t, const int8_t*, int64_t, int,
                        const QStore&);

template <int... I>
constexpr std::array<TileFn, sizeof...(I)> vnni_table(std::integer_sequence<int, I...>) {
  return {tile_vnni<I + 1>...};
}

bool use_vnni() {
  static const bool yes = cpu_has("avx512") && __builtin_cpu_supports("avx512vnni") &&
                          std::strcmp(ukernel().isa, "avx512") == 0;  // SFT_KERNELS_ISA can force the portable loop
  return yes;
}

}  // namespace

std::vector<at::Tensor> qconv2d_pack(const at::Tensor& w_q) {
  TORCH_CHECK(w_q.dim() == 4 && w_q.scalar_type() == at::kChar,
              "sft_cpu::qconv2d_pack: weight must be int8 [K, C, R, S]");
  const at::Tensor w = w_q.contiguous();
  const int64_t K = w.size(0), C = w.size(1), RS = w.size(2) * w.size(3), C4 = (C + 3) / 4 * 4;
  const int64_t panels = (K + kNR - 1) / kNR, kg = C4 / 4;
  at::Tensor packed = at::zeros({panels * RS * kg * kNR * 4}, w.options());
  at::Tensor wsum = at::zeros({panels * kNR}, w.options().dtype(at::kInt));
  const int8_t* src = w.data_ptr<int8_t>();
  int8_t* dst = packed.data_ptr<int8_t>();
  int32_t* ws = wsum.data_ptr<int32_t>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < RS; ++t) {
        const int8_t v = src[(k * C + c) * RS + t];
        dst[((((k / kNR) * RS + t) * kg + c / 4) * kNR + k % kNR) * 4 + c % 4] = v;
        ws[k] += v;
      }
  return {packed, wsum};
}

at::Tensor qconv2d_cpu(const at::Tensor& x_q, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                       int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                       int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                       double out_scale, int64_t out_zero_point) {
  TORCH_CHECK(x_q.dim() == 4 && x_q.scalar_type() == at::kByte && x_q.device().is_cpu(),
              "sft_cpu::qconv2d: input must be a uint8 [N, C, H, W] CPU tensor");
  TORCH_CHECK(packed.scalar_type() == at::kChar && wsum.scalar_type() == at::kInt &&
                  w_scale.scalar_type() == at::kFloat,
              "sft_cpu::qconv2d: packed weights come from qconv2d_pack; w_scale is float32");
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255 && out_zero_point >= 0 && out_zero_point <= 255,
              "sft_cpu::qconv2d: zero points must lie in [0, 255]");
  const int64_t N = x_q.size(0), C = x_q.size(1), H = x_q.size(2), W = x_q.size(3), K = w_scale.size(0);
  const int64_t C4 = (C + 3) / 4 * 4, kg = C4 / 4, RS = R * S, panels = (K + kNR - 1) / kNR;
  TORCH_CHECK(packed.numel() == panels * RS * kg * kNR * 4 && wsum.numel() == panels * kNR,
              "sft_cpu::qconv2d: packed weights do not match K=", K, ", C=", C, ", R=", R, ", S=", S);
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::qconv2d: the input is too small for the kernel");
  const bool quant = out_scale > 0;
  at::Tensor out = at::empty({N, K, P, Q}, x_q.options().dtype(quant ? at::kByte : at::kFloat)
                                              .memory_format(at::MemoryFormat::ChannelsLast));
  if (N == 0 || K == 0) return out;
  const at::Tensor res = residual.has_value() ? residual->contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  if (res.defined())
    TORCH_CHECK(res.sizes() == out.sizes() && res.scalar_type() == at::kFloat,
                "sft_cpu::qconv2d: residual must be float32 and shaped like the output");

  // The zero-point-padded NHWC copy, channels rounded up to 4 (padded channels meet zero weights).
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  at::Tensor xp = at::full({N, Hp, Wp, C4}, static_cast<uint8_t>(x_zero_point), x_q.options());
  xp.narrow(1, ph, H).narrow(2, pw, W).narrow(3, 0, C).copy_(x_q.permute({0, 2, 3, 1}));
  if (C4 > C) xp.narrow(3, C, C4 - C).zero_();

  // Per-channel constants padded to whole panels.
  const int64_t Kp = panels * kNR;
  at::Tensor comp = wsum * static_cast<int32_t>(x_zero_point);
  at::Tensor mult = at::zeros({Kp}, w_scale.options());
  mult.narrow(0, 0, K).copy_(w_scale.to(at::kDouble).mul(x_scale).to(at::kFloat));
  at::Tensor bpad;
  if (bias.has_value() && bias->defined()) {
    bpad = at::zeros({Kp}, w_scale.options());
    bpad.narrow(0, 0, K).copy_(*bias);
  }
  std::vector<int64_t> toff(RS);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s) toff[r * S + s] = (r * dh * Wp + s * dw) * C4;

  const uint8_t* xb = xp.data_ptr<uint8_t>();
  const int8_t* bb = packed.data_ptr<int8_t>();
  const int64_t M = N * P * Q, mtiles = (M + kMR - 1) / kMR, PQ = P * Q;
  const bool vnni = use_vnni();
  static constexpr auto table = vnni_table(std::make_integer_sequence<int, kMR>{});
  QStore base{comp.data_ptr<int32_t>(), mult.data_ptr<float>(), bpad.defined() ? bpad.data_ptr<float>() : nullptr,
              static_cast<int>(activation), static_cast<float>(negative_slope), nullptr, K,
              quant ? static_cast<float>(1.0 / out_scale) : 0.f, static_cast<int>(out_zero_point), quant, nullptr, K};
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  uint8_t* ob = static_cast<uint8_t*>(out.data_ptr());
  const int64_t esize = quant ? 1 : 4;
  at::parallel_for(0, mtiles, 4, [&](int64_t t0, int64_t t1) {
    const uint8_t* rows[kMR];
    for (int64_t mt = t0; mt < t1; ++mt) {
      const int64_t m0 = mt * kMR;
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      for (int i = 0; i < mr; ++i) {
        const int64_t m = m0 + i, n = m / PQ, p = (m % PQ) / Q, q = m % Q;
        rows[i] = xb + ((n * Hp + p * sh) * Wp + q * sw) * C4;
      }
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * kNR;
        const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
        QStore st = base;
        st.res = rp ? rp + m0 * K + j0 : nullptr;
        st.out = ob + (m0 * K + j0) * esize;
        const int8_t* bp = bb + panel * RS * kg * kNR * 4;
        if (vnni) {
          table[mr - 1](rows, toff.data(), RS, kg, bp, j0, ncols, st);
        } else {
          tile_generic(rows, mr, toff.data(), RS, kg, bp, j0, ncols, st);
        }
      }
    }
  });
  return out;
}

}  // namespace sft
