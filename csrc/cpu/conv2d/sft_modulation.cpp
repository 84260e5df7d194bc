// An SFT layer's output in float32, computed tile by tile: x·(scale + 1) + shift, where scale and shift are two 1×1
// convs of the layer's mid maps (its second convs), for the conv that reads it. Those convs write 4 MB maps each on
// SFTNet's trunk (64 channels at 128²) and the reading conv had applied the modulation in its Winograd input
// transform, where each input value is transformed by ~2.25 overlapping tiles: the trunk conv 3.8 → 4.9 ms. Here
// 7 pixels × 32 channels of both convs stay in 28 AVX-512 accumulators (each mid value broadcast from memory into
// the FMA), and only x and the modulated map pass through memory.
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/engine/ukernel.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {

namespace {

constexpr int kMR = 7;  // pixels per tile

// One 1×1 conv: its mid map (pixel pitch `pitch`, channels contiguous), weights [C][K] and bias.
struct Branch {
  const float* mid;
  int64_t pitch, C;
  const float* wt;
  const float* bias;
};

// One conv's sums for n pixels from m0 × channels [j0, j0 + 32) (masks m0k, m1k: the two 16-channel halves), from
// its bias, into a0 / a1.
__attribute__((target("avx512f"), always_inline)) inline void accumulate(const Branch& b, int64_t K, int64_t m0, int n,
                                                                         int64_t j0, __mmask16 m0k, __mmask16 m1k,
                                                                         __m512* a0, __m512* a1) {
  const __m512 b0 = b.bias ? _mm512_maskz_loadu_ps(m0k, b.bias + j0) : _mm512_setzero_ps();
  const __m512 b1 = b.bias ? _mm512_maskz_loadu_ps(m1k, b.bias + j0 + 16) : _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) a0[i] = b0, a1[i] = b1;
  const float* mid = b.mid + m0 * b.pitch;
  for (int64_t c = 0; c < b.C; ++c) {
    const __m512 w0 = _mm512_maskz_loadu_ps(m0k, b.wt + c * K + j0);
    const __m512 w1 = _mm512_maskz_loadu_ps(m1k, b.wt + c * K + j0 + 16);
#pragma GCC unroll 8
    for (int i = 0; i < n; ++i) {
      const __m512 a = _mm512_set1_ps(mid[i * b.pitch + c]);
      a0[i] = _mm512_fmadd_ps(a, w0, a0[i]);
      a1[i] = _mm512_fmadd_ps(a, w1, a1[i]);
    }
  }
}

// mr pixels from m0 × channels [j0, j0 + 32): both convs' sums, then x·(scale + 1) + shift. Full: mr = kMR and
// 32 channels (constant trip counts keep the accumulators in registers).
template <bool Full>
__attribute__((target("avx512f"))) void tile(const Branch& s, const Branch& t, const float* x, float* out, int64_t K,
                                             int64_t m0, int mr, int64_t j0) {
  const int64_t nc = std::min<int64_t>(32, K - j0);
  const __mmask16 m0k = Full ? 0xFFFF : static_cast<__mmask16>((1u << std::min<int64_t>(16, nc)) - 1u);
  const __mmask16 m1k = Full ? 0xFFFF : static_cast<__mmask16>(nc > 16 ? (1u << (nc - 16)) - 1u : 0u);
  const int n = Full ? kMR : mr;
  __m512 as0[kMR], as1[kMR], at0[kMR], at1[kMR];
  accumulate(s, K, m0, n, j0, m0k, m1k, as0, as1);
  accumulate(t, K, m0, n, j0, m0k, m1k, at0, at1);
  const __m512 one = _mm512_set1_ps(1.f);
#pragma GCC unroll 8
  for (int i = 0; i < n; ++i) {
    const float* xr = x + (m0 + i) * K + j0;
    float* o = out + (m0 + i) * K + j0;
    _mm512_mask_storeu_ps(o, m0k,
                          _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0k, xr), _mm512_add_ps(as0[i], one), at0[i]));
    _mm512_mask_storeu_ps(o + 16, m1k,
                          _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1k, xr + 16), _mm512_add_ps(as1[i], one), at1[i]));
  }
}

// Any CPU: the same sums and modulation one value at a time.
void pixels_scalar(const Branch& s, const Branch& t, const float* x, float* out, int64_t K, int64_t m0, int64_t m1) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t k = 0; k < K; ++k) {
      float sc = s.bias ? s.bias[k] : 0.f, sh = t.bias ? t.bias[k] : 0.f;
      for (int64_t c = 0; c < s.C; ++c) sc += s.mid[m * s.pitch + c] * s.wt[c * K + k];
      for (int64_t c = 0; c < t.C; ++c) sh += t.mid[m * t.pitch + c] * t.wt[c * K + k];
      out[m * K + k] = x[m * K + k] * (sc + 1.f) + sh;
    }
}

}  // namespace

// A mid map as the kernel reads it: channels contiguous, one pitch between pixels (a channel slice of a wider
// channels_last map qualifies, as SFTNet's first convs' 64-channel output halves do).
at::Tensor pixel_rows(const at::Tensor& mid, int64_t* pitch) {
  const int64_t H = mid.size(2), W = mid.size(3);
  const bool rows = mid.stride(1) == 1 && mid.stride(2) == W * mid.stride(3) &&
                    (mid.size(0) == 1 || mid.stride(0) == H * W * mid.stride(3));
  const at::Tensor m = rows ? mid : mid.contiguous(at::MemoryFormat::ChannelsLast);
  *pitch = m.stride(3);
  return m;
}

void check_sft_modulation(const char* op, const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                          const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t, const at::Tensor& w_t,
                          const c10::optional<at::Tensor>& b_t) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat, op, ": x must be float32 [N, K, H, W]");
  const int64_t N = x.size(0), K = x.size(1), H = x.size(2), W = x.size(3);
  auto check = [&](const at::Tensor& mid, const at::Tensor& w, const c10::optional<at::Tensor>& b, const char* name) {
    TORCH_CHECK(mid.dim() == 4 && mid.scalar_type() == at::kFloat && mid.size(0) == N && mid.size(2) == H &&
                    mid.size(3) == W,
                op, ": ", name, " must be float32 with x's batch and spatial size");
    TORCH_CHECK(w.dim() == 4 && w.scalar_type() == at::kFloat && w.size(0) == K && w.size(1) == mid.size(1) &&
                    w.size(2) == 1 && w.size(3) == 1,
                op, ": ", name, "'s conv must be float32 1×1 from its channels to x's");
    TORCH_CHECK(!b.has_value() || (b->scalar_type() == at::kFloat && b->numel() == K), op, ": ", name,
                "'s bias must hold ", K, " float32 values");
  };
  check(mid_s, w_s, b_s, "mid_s");
  check(mid_t, w_t, b_t, "mid_t");
}

at::Tensor sft_modulation_cpu(const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                              const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t, const at::Tensor& w_t,
                              const c10::optional<at::Tensor>& b_t) {
  constexpr const char* op = "sft_cpu::sft_modulation";
  check_sft_modulation(op, x, mid_s, w_s, b_s, mid_t, w_t, b_t);
  const int64_t N = x.size(0), K = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = pooled_empty(x.sizes(), x.options(), at::MemoryFormat::ChannelsLast);
  const int64_t M = N * H * W;
  if (M == 0 || K == 0) return out;
  int64_t ps = 0, pt = 0;
  const at::Tensor ms = pixel_rows(mid_s, &ps), mt = pixel_rows(mid_t, &pt);
  // [C][K]: the 32 output channels of one input channel are two vectors (cached per weight)
  auto wt_of = [](const at::Tensor& w, int64_t tag) {
    return cached_weight_transform(w, tag, [](const at::Tensor& wc) { return wc.flatten(1).t().contiguous(); });
  };
  const at::Tensor wts = wt_of(w_s, int64_t(9) << 40), wtt = wt_of(w_t, int64_t(9) << 40);
  const at::Tensor bs = b_s.has_value() ? b_s->contiguous() : at::Tensor(), bt = b_t.has_value() ? b_t->contiguous()
                                                                                                 : at::Tensor();
  const Branch s{ms.data_ptr<float>(), ps, ms.size(1), wts.data_ptr<float>(),
                 bs.defined() ? bs.data_ptr<float>() : nullptr};
  const Branch t{mt.data_ptr<float>(), pt, mt.size(1), wtt.data_ptr<float>(),
                 bt.defined() ? bt.data_ptr<float>() : nullptr};
  const float* xp = xc.data_ptr<float>();
  float* op_ = out.data_ptr<float>();
  if (std::strcmp(ukernel().isa, "avx512") != 0) {
    at::parallel_for(0, M, 64, [&](int64_t a, int64_t b) { pixels_scalar(s, t, xp, op_, K, a, b); });
    return out;
  }
  const int64_t panels = (K + 31) / 32, tiles = (M + kMR - 1) / kMR;
  at::parallel_for(0, tiles * panels, 8, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t m0 = u / panels * kMR, j0 = u % panels * 32;
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      if (mr == kMR && K - j0 >= 32)
        tile<true>(s, t, xp, op_, K, m0, mr, j0);
      else
        tile<false>(s, t, xp, op_, K, m0, mr, j0);
    }
  });
  return out;
}

}  // namespace sft
