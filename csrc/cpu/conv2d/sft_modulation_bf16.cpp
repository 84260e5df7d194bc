// An SFT layer's output with its second convs in bf16 on AMX tiles (sft_modulation's bf16 form, for models converted
// with fp32_precision="bf16"): x·(scale + 1) + shift, scale and shift 1×1 convs of the bf16-rounded mid maps with
// bf16 weights, float32 sums, bias and modulation. Per block of 32 pixels each mid map is rounded once into a small
// per-thread buffer; per 32-channel panel the scale sums, then the shift sums, go through the tiles and the block's
// output is written from both. The float32 op (sft_modulation.cpp) is bound by its FMAs (SFTNet: 1.6 ms a layer).
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <tuple>

#include "cpu/conv2d/amx_bf16.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/engine/pack.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {
namespace {

// One mid map as the tiles read it: pixel rows of C channels at a pitch, packed weights, bias.
struct Branch {
  const float* mid;
  int64_t pitch, C;
  const uint16_t* packed;
  const float* bias;
};

// out = x·(s + bs + 1) + (t + bt) for n pixels × nc channels of sums s, t [32][32].
__attribute__((target("avx512f"))) void modulate_store(const float* s, const float* t, const float* bs,
                                                       const float* bt, const float* x, float* out, int64_t K,
                                                       int n, int nc) {
  const __mmask16 m0 = static_cast<__mmask16>((1u << std::min(16, nc)) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>(nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 bs0 = bs ? _mm512_maskz_loadu_ps(m0, bs) : _mm512_setzero_ps();
  const __m512 bs1 = bs ? _mm512_maskz_loadu_ps(m1, bs + 16) : _mm512_setzero_ps();
  const __m512 bt0 = bt ? _mm512_maskz_loadu_ps(m0, bt) : _mm512_setzero_ps();
  const __m512 bt1 = bt ? _mm512_maskz_loadu_ps(m1, bt + 16) : _mm512_setzero_ps();
  for (int i = 0; i < n; ++i, x += K, out += K) {
    const __m512 s0 = _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(s + i * 32), bs0), one);
    const __m512 s1 = _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(s + i * 32 + 16), bs1), one);
    const __m512 t0 = _mm512_add_ps(_mm512_load_ps(t + i * 32), bt0);
    const __m512 t1 = _mm512_add_ps(_mm512_load_ps(t + i * 32 + 16), bt1);
    _mm512_mask_storeu_ps(out, m0, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, x), s0, t0));
    _mm512_mask_storeu_ps(out + 16, m1, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, x + 16), s1, t1));
  }
}

// One block of 32 pixels through the second convs: as / at_ their bf16 mid rows (Cps / Cpt channels each), x and
// out at the block's first pixel (K channels), n pixels stored.
void second_convs(const Branch& s, const uint16_t* as, int64_t Cps, const Branch& t, const uint16_t* at_, int64_t Cpt,
                  const float* x, float* out, int64_t K, int n) {
  alignas(64) float sums[2][32 * bf16::kNR];
  const int64_t toff = 0;
  for (int64_t j0 = 0; j0 < K; j0 += bf16::kNR) {
    const int nc = static_cast<int>(std::min<int64_t>(bf16::kNR, K - j0));
    bf16::block_for(nc, as, Cps * 2, &toff, 1, Cps / bf16::kCh, s.packed + j0 * Cps, sums[0]);
    bf16::block_for(nc, at_, Cpt * 2, &toff, 1, Cpt / bf16::kCh, t.packed + j0 * Cpt, sums[1]);
    modulate_store(sums[0], sums[1], s.bias ? s.bias + j0 : nullptr, t.bias ? t.bias + j0 : nullptr, x + j0,
                   out + j0, K, n, nc);
  }
}

// A first conv's sums [32][32] (channels [j0, j0 + nc) of its output) plus bias, leaky relu (slope), rounded to bf16
// into 32 mid rows at dst (row pitch ld elements, channel j0 first): the second convs' A operand. The rows' channels
// past the first conv's outputs keep the zeros they were given.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void mid_rows(const float* sums, const float* bias,
                                                                               float slope, int nc, uint16_t* dst,
                                                                               int64_t ld) {
  const __mmask16 m0 = static_cast<__mmask16>((1u << std::min(16, nc)) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>(nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
  const __mmask32 m = static_cast<__mmask32>(nc >= 32 ? 0xFFFFFFFFu : (1u << nc) - 1u);
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps(), sl = _mm512_set1_ps(slope);
  for (int i = 0; i < 32; ++i) {
    __m512 a = _mm512_add_ps(_mm512_load_ps(sums + i * 32), b0);
    __m512 b = _mm512_add_ps(_mm512_load_ps(sums + i * 32 + 16), b1);
    a = _mm512_mask_mul_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), a, sl);  // as the conv store's leaky relu
    b = _mm512_mask_mul_ps(b, _mm512_cmp_ps_mask(b, zero, _CMP_LT_OQ), b, sl);
    _mm512_mask_storeu_epi16(dst + i * ld, m, (__m512i)_mm512_cvtne2ps_pbh(b, a));
  }
}

const uint16_t* bits(const at::Tensor& packed) { return reinterpret_cast<const uint16_t*>(packed.data_ptr<int16_t>()); }
at::Tensor contiguous_bias(const c10::optional<at::Tensor>& b) {
  return b.has_value() ? b->contiguous() : at::Tensor();
}
const float* ptr(const at::Tensor& b) { return b.defined() ? b.data_ptr<float>() : nullptr; }

}  // namespace

at::Tensor sft_modulation_bf16_cpu(const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                                   const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t,
                                   const at::Tensor& w_t, const c10::optional<at::Tensor>& b_t) {
  constexpr const char* op = "sft_cpu::sft_modulation_bf16";
  TORCH_CHECK(conv2d_bf16_available(), op, ": needs AMX-BF16 tiles or AVX512-BF16 (Intel Xeon Sapphire Rapids, AMD "
              "Zen 4) and the AVX-512 kernels; use sft_modulation (float32) here");
  check_sft_modulation(op, x, mid_s, w_s, b_s, mid_t, w_t, b_t);
  const int64_t N = x.size(0), K = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = pooled_empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  const int64_t M = N * H * W;
  if (M == 0 || K == 0) return out;
  int64_t ps_ = 0, pt_ = 0;
  const at::Tensor ms = pixel_rows(mid_s, &ps_), mt = pixel_rows(mid_t, &pt_);
  const int64_t Cps = round_up(ms.size(1), bf16::kCh), Cpt = round_up(mt.size(1), bf16::kCh);
  const at::Tensor ps = bf16::packed_weight(w_s, Cps, 1), pt = bf16::packed_weight(w_t, Cpt, 1);
  const at::Tensor bs = contiguous_bias(b_s), bt = contiguous_bias(b_t);
  const Branch s{ms.data_ptr<float>(), ps_, ms.size(1), bits(ps), ptr(bs)};
  const Branch t{mt.data_ptr<float>(), pt_, mt.size(1), bits(pt), ptr(bt)};
  const float* xp = xc.data_ptr<float>();
  float* op_ = out.data_ptr<float>();
  const int64_t blocks = (M + 31) / 32;
  at::parallel_for(0, blocks, 4, [&](int64_t b0, int64_t b1) {
    // 32 rows of each branch's rounded channels (a last block's tiles read all 32; rows past it meet no output)
    at::Tensor buf_t = pooled_empty({32 * (Cps + Cpt)}, x.options().dtype(at::kShort));
    uint16_t* as = reinterpret_cast<uint16_t*>(buf_t.data_ptr<int16_t>());
    uint16_t* at_ = as + 32 * Cps;
    bf16::begin_thread();
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t m0 = blk * 32;
      const int n = static_cast<int>(std::min<int64_t>(32, M - m0));
      bf16::fill_pixels(s.mid + m0 * s.pitch, s.pitch, nullptr, nullptr, n, s.C, Cps, as);
      bf16::fill_pixels(t.mid + m0 * t.pitch, t.pitch, nullptr, nullptr, n, t.C, Cpt, at_);
      second_convs(s, as, Cps, t, at_, Cpt, xp + m0 * K, op_ + m0 * K, K, n);
    }
    bf16::end_thread();
  });
  return out;
}

at::Tensor sft_layer_bf16_cpu(const at::Tensor& x, const at::Tensor& cond, const at::Tensor& w0_s,
                              const c10::optional<at::Tensor>& b0_s, const at::Tensor& w0_t,
                              const c10::optional<at::Tensor>& b0_t, const at::Tensor& w1_s,
                              const c10::optional<at::Tensor>& b1_s, const at::Tensor& w1_t,
                              const c10::optional<at::Tensor>& b1_t, double negative_slope) {
  constexpr const char* op = "sft_cpu::sft_layer_bf16";
  TORCH_CHECK(conv2d_bf16_available(), op, ": needs AMX-BF16 tiles or AVX512-BF16 (Intel Xeon Sapphire Rapids, AMD "
              "Zen 4) and the AVX-512 kernels; use the float32 SFT layer here");
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat, op, ": x must be float32 [N, K, H, W]");
  TORCH_CHECK(cond.dim() == 4 && cond.scalar_type() == at::kFloat && cond.size(0) == x.size(0) &&
                  cond.size(2) == x.size(2) && cond.size(3) == x.size(3),
              op, ": cond must be float32 with x's batch and spatial size");
  const int64_t N = x.size(0), K = x.size(1), H = x.size(2), W = x.size(3), Cc = cond.size(1);
  auto check = [&](const at::Tensor& w, const c10::optional<at::Tensor>& b, int64_t k, int64_t c, const char* name) {
    TORCH_CHECK(w.dim() == 4 && w.scalar_type() == at::kFloat && w.size(0) == k && w.size(1) == c &&
                    w.size(2) == 1 && w.size(3) == 1,
                op, ": ", name, " must be a float32 1×1 conv weight [", k, ", ", c, ", 1, 1], got ", w.sizes());
    TORCH_CHECK(!b.has_value() || (b->scalar_type() == at::kFloat && b->numel() == k), op, ": ", name,
                "'s bias must hold ", k, " float32 values");
  };
  const int64_t Cs = w0_s.size(0), Ct = w0_t.size(0);
  check(w0_s, b0_s, Cs, Cc, "w0_s");
  check(w0_t, b0_t, Ct, Cc, "w0_t");
  check(w1_s, b1_s, K, Cs, "w1_s");
  check(w1_t, b1_t, K, Ct, "w1_t");
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = pooled_empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  const int64_t M = N * H * W;
  if (M == 0 || K == 0) return out;
  int64_t cpitch = 0;
  const at::Tensor cm = pixel_rows(cond, &cpitch);
  const int64_t Cpc = round_up(Cc, bf16::kCh), Cps = round_up(Cs, bf16::kCh), Cpt = round_up(Ct, bf16::kCh);
  const at::Tensor p0s = bf16::packed_weight(w0_s, Cpc, 1), p0t = bf16::packed_weight(w0_t, Cpc, 1);
  const at::Tensor p1s = bf16::packed_weight(w1_s, Cps, 1), p1t = bf16::packed_weight(w1_t, Cpt, 1);
  const at::Tensor c0s = contiguous_bias(b0_s), c0t = contiguous_bias(b0_t);
  const at::Tensor c1s = contiguous_bias(b1_s), c1t = contiguous_bias(b1_t);
  const Branch s{nullptr, 0, Cs, bits(p1s), ptr(c1s)}, t{nullptr, 0, Ct, bits(p1t), ptr(c1t)};
  const float* xp = xc.data_ptr<float>();
  const float* cp = cm.data_ptr<float>();
  float* op_ = out.data_ptr<float>();
  const float slope = static_cast<float>(negative_slope);
  const int64_t blocks = (M + 31) / 32, toff = 0;
  at::parallel_for(0, blocks, 4, [&](int64_t b0, int64_t b1) {
    // rounded rows of 32 pixels: the condition map's, then the two mid maps' (their padding channels zero)
    at::Tensor buf_t = at::zeros({32 * (Cpc + Cps + Cpt)}, x.options().dtype(at::kShort));
    uint16_t* ac = reinterpret_cast<uint16_t*>(buf_t.data_ptr<int16_t>());
    uint16_t* as = ac + 32 * Cpc;
    uint16_t* at_ = as + 32 * Cps;
    alignas(64) float sums[32 * bf16::kNR];
    bf16::begin_thread();
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t m0 = blk * 32;
      const int n = static_cast<int>(std::min<int64_t>(32, M - m0));
      bf16::fill_pixels(cp + m0 * cpitch, cpitch, nullptr, nullptr, n, Cc, Cpc, ac);
      for (auto [w, b, C, Cp, dst] : {std::make_tuple(bits(p0s), ptr(c0s), Cs, Cps, as),
                                      std::make_tuple(bits(p0t), ptr(c0t), Ct, Cpt, at_)})
        for (int64_t j0 = 0; j0 < C; j0 += bf16::kNR) {
          const int nc = static_cast<int>(std::min<int64_t>(bf16::kNR, C - j0));
          bf16::block_for(nc, ac, Cpc * 2, &toff, 1, Cpc / bf16::kCh, w + j0 * Cpc, sums);
          mid_rows(sums, b ? b + j0 : nullptr, slope, nc, dst + j0, Cp);
        }
      second_convs(s, as, Cps, t, at_, Cpt, xp + m0 * K, op_ + m0 * K, K, n);
    }
    bf16::end_thread();
  });
  return out;
}

}  // namespace sft
