// An int8 SFT layer's output, computed tile by tile: the uint8 map quantize(x·(scale + 1) + shift) that the int8 conv
// after the layer reads, where scale and shift are the float outputs of two int8 1×1 convs (the layer's second
// convs). On VNNI, one pair tile holds both convs' sums for 7 pixels × 32 channels in registers and modulates and
// requantizes them there; elsewhere (and for pixel or channel tails) the two convs' tiles store scale and shift
// into small per-thread buffers (L1) that the quantizer reads with x. Neither float map is written to memory.
//
// Unfused, each SFT layer of SFTNet's trunk (64 channels at 128², float32) writes two 4 MB maps and the trunk conv
// reads them back with x (12 MB) to quantize its input; here the layer reads x (4 MB) and writes 1 MB of uint8.
// The arithmetic is the unfused one's, operation for operation (the tiles' float store, then x·(s + 1) + t and the
// rounding of qconv2d's input quantizer), so the two give the same bytes.
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {

namespace {

using qconv::kMR;
using qconv::kNR;

// One of the two 1×1 convs: its input (uint8 NHWC, Cp bytes per pixel) and its store's per-channel constants.
struct Branch {
  at::Tensor input;  // the map itself, or its channel-padded copy
  const uint8_t* x;
  int64_t Cp;
  const int8_t* packed;
  int64_t panel_size;
  std::vector<int32_t> comp;
  qconv::ChannelConstants cc;
};

Branch branch(const at::Tensor& mid, double x_scale, int64_t zx, const at::Tensor& packed, const at::Tensor& wsum,
              const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias, const at::Tensor& x,
              const char* name) {
  constexpr const char* op = "sft_cpu::qsft_modulation";
  TORCH_CHECK(mid.dim() == 4 && mid.scalar_type() == at::kByte, op, ": ", name, " must be a uint8 [N, C, H, W] map");
  TORCH_CHECK(mid.size(0) == x.size(0) && mid.size(2) == x.size(2) && mid.size(3) == x.size(3), op, ": ", name,
              " must have x's batch and spatial size");
  TORCH_CHECK(zx >= 0 && zx <= 255 && x_scale > 0, op, ": ", name, "'s zero point must be in [0, 255], its scale > 0");
  const int64_t K = x.size(1), C = mid.size(1), panels = (K + kNR - 1) / kNR;
  TORCH_CHECK(w_scale.dim() == 1 && w_scale.size(0) == K && w_scale.scalar_type() == at::kFloat, op, ": ", name,
              "'s weight scales must be float32 [", K, "]");
  TORCH_CHECK(packed.numel() == qconv2d_packed_numel(K, C, 1, 1) && wsum.numel() == panels * kNR, op, ": ", name,
              "'s packed weights do not match a ", C, "→", K, " 1×1 conv (pack them with qconv2d_pack)");
  Branch b;
  const int64_t align = qconv2d_channel_align(C);
  b.Cp = (C + align - 1) / align * align;
  // The tiles read Cp bytes per pixel: a contiguous NHWC map without channel padding is read in place.
  const bool in_place = b.Cp == C && mid.is_contiguous(at::MemoryFormat::ChannelsLast);
  b.input = in_place ? mid : qconv::padded_input(mid, x_scale, zx, 0, 0, b.Cp, 0, {nullptr, nullptr});
  b.x = b.input.data_ptr<uint8_t>();
  b.packed = packed.data_ptr<int8_t>();
  b.panel_size = packed.numel() / panels;
  const int32_t* ws = wsum.data_ptr<int32_t>();
  b.comp.resize(panels * kNR);
  for (int64_t k = 0; k < panels * kNR; ++k) b.comp[k] = ws[k] * static_cast<int32_t>(zx);
  b.cc = qconv::channel_constants(w_scale, x_scale, bias, K, panels * kNR, op);
  return b;
}

constexpr int kPairMR = 7;  // pixels per pair tile: 28 accumulators (both convs × 32 channels)

// The store constants of one conv's 32-channel panel, two 16-channel halves.
struct Half2 {
  __m512i comp[2];
  __m512 mult[2], bias[2];
};

__attribute__((target("avx512f,avx512bw,avx512vl"))) Half2 half2(const Branch& b, int64_t j0) {
  Half2 h;
  for (int i = 0; i < 2; ++i) {
    h.comp[i] = _mm512_loadu_si512(b.comp.data() + j0 + 16 * i);
    h.mult[i] = _mm512_loadu_ps(b.cc.mult.data() + j0 + 16 * i);
    h.bias[i] = b.cc.bias.empty() ? _mm512_setzero_ps() : _mm512_loadu_ps(b.cc.bias.data() + j0 + 16 * i);
  }
  return h;
}

// 16 channels of one pixel: the float store's scale and shift from the sums sa, ta (half h of the panel), then
// x·(scale + 1) + shift rounded as the input quantizer does (quantize16 in qconv2d.cpp), before the narrowing.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i q16(__m512i sa, __m512i ta, int h, const float* xr,
                                                                       const Half2& hs, const Half2& ht, __m512 vi,
                                                                       __m512i vz) {
  const __m512 sc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sa, hs.comp[h])), hs.mult[h], hs.bias[h]);
  const __m512 sh = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ta, ht.comp[h])), ht.mult[h], ht.bias[h]);
  __m512 f = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 16 * h), _mm512_add_ps(sc, _mm512_set1_ps(1.f)), sh);
  f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, vi), _mm512_set1_ps(-512.f)), _mm512_set1_ps(512.f));
  return _mm512_add_epi32(_mm512_cvtps_epi32(f), vz);
}

// One conv's sums for kPairMR pixels (first bytes at r, pitch c: c / 4 words each) × its 32-channel panel b, into
// a0 / a1 (channels 0-15 / 16-31).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void sums(
    const uint8_t* r, int64_t c, const int8_t* b, __m512i* a0, __m512i* a1) {
#pragma GCC unroll 8
  for (int i = 0; i < kPairMR; ++i) a0[i] = a1[i] = _mm512_setzero_si512();
  for (int64_t g = 0; g < c / 4; ++g, b += kNR * 4) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
#pragma GCC unroll 8
    for (int i = 0; i < kPairMR; ++i) {
      int32_t word;
      std::memcpy(&word, r + i * c + 4 * g, 4);
      const __m512i a = _mm512_set1_epi32(word);
      a0[i] = _mm512_dpbusd_epi32(a0[i], a, b0);
      a1[i] = _mm512_dpbusd_epi32(a1[i], a, b1);
    }
  }
}

// kPairMR whole pixels × one whole 32-channel panel on VNNI: both convs' sums in registers, then per 16 channels
// the float store's arithmetic (scale, shift), x·(scale + 1) + shift and the input quantizer's rounding, the bytes
// narrowed by saturating packs. No buffer, and one call per panel instead of two tiles and a quantizing pass.
// rs / rt: the pixels' first bytes in each map (pitch cs / ct); x, out: the first pixel's channel j0 (pitch K).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void pair_tile(
    const uint8_t* rs, int64_t cs, const int8_t* bs, const uint8_t* rt, int64_t ct, const int8_t* bt, const Half2& hs,
    const Half2& ht, const float* x, uint8_t* out, int64_t K, float inv, int zp) {
  const __m512 vi = _mm512_set1_ps(inv);
  const __m512i vz = _mm512_set1_epi32(zp);
  __m512i s0[kPairMR], s1[kPairMR], t0[kPairMR], t1[kPairMR];
  sums(rs, cs, bs, s0, s1);
  sums(rt, ct, bt, t0, t1);
  const __m512i fix = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
#pragma GCC unroll 8
  for (int i = 0; i < kPairMR; i += 2) {
    const int i1 = i + 1 < kPairMR ? i + 1 : i;  // the odd last pixel is packed with itself
    const __m512i q0 = q16(s0[i], t0[i], 0, x + i * K, hs, ht, vi, vz);
    const __m512i q1 = q16(s1[i], t1[i], 1, x + i * K, hs, ht, vi, vz);
    const __m512i q2 = q16(s0[i1], t0[i1], 0, x + i1 * K, hs, ht, vi, vz);
    const __m512i q3 = q16(s1[i1], t1[i1], 1, x + i1 * K, hs, ht, vi, vz);
    const __m512i w = _mm512_permutexvar_epi32(
        fix, _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3)));  // saturating
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i * K), _mm512_castsi512_si256(w));
    if (i1 != i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i1 * K), _mm512_extracti64x4_epi64(w, 1));
  }
}

// Pixels [m0, m0 + kPairMR) × channels [j0, j0 + 32) (everything by pointer or scalar: no vector crosses into the
// caller, which is not compiled for AVX-512).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void pair_unit(const Branch& s, const Branch& t,
                                                                               const float* x, uint8_t* out,
                                                                               int64_t K, int64_t m0, int64_t j0,
                                                                               float inv, int zp) {
  pair_tile(s.x + m0 * s.Cp, s.Cp, s.packed + j0 / kNR * s.panel_size, t.x + m0 * t.Cp, t.Cp,
            t.packed + j0 / kNR * t.panel_size, half2(s, j0), half2(t, j0), x + m0 * K + j0, out + m0 * K + j0, K,
            inv, zp);
}

}  // namespace

at::Tensor qsft_modulation_cpu(const at::Tensor& x, const at::Tensor& mid_s, double s_scale, int64_t s_zero_point,
                               const at::Tensor& packed_s, const at::Tensor& wsum_s, const at::Tensor& w_scale_s,
                               const c10::optional<at::Tensor>& bias_s, const at::Tensor& mid_t, double t_scale,
                               int64_t t_zero_point, const at::Tensor& packed_t, const at::Tensor& wsum_t,
                               const at::Tensor& w_scale_t, const c10::optional<at::Tensor>& bias_t, double out_scale,
                               int64_t out_zero_point) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat,
              "sft_cpu::qsft_modulation: x must be float32 [N, C, H, W]");
  TORCH_CHECK(out_scale > 0 && out_zero_point >= 0 && out_zero_point <= 255,
              "sft_cpu::qsft_modulation: out_scale must be > 0 and out_zero_point in [0, 255]");
  const Branch s = branch(mid_s, s_scale, s_zero_point, packed_s, wsum_s, w_scale_s, bias_s, x, "mid_s");
  const Branch t = branch(mid_t, t_scale, t_zero_point, packed_t, wsum_t, w_scale_t, bias_t, x, "mid_t");
  const at::Tensor xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), K = x.size(1), M = N * x.size(2) * x.size(3), panels = (K + kNR - 1) / kNR;
  at::Tensor out = pooled_empty(x.sizes(), x.options().dtype(at::kByte), at::MemoryFormat::ChannelsLast);
  if (M == 0 || K == 0) return out;
  const float* xp = xc.data_ptr<float>();
  uint8_t* op = out.data_ptr<uint8_t>();
  const float inv = static_cast<float>(1.0 / out_scale), fz = static_cast<float>(out_zero_point);
  const int64_t zero = 0;  // the one tap's offset

  // Whole panels of pixels whose channel bytes are whole 32-bit groups: the VNNI pair tile; the rest (a last partial
  // panel or tile, CPUs without VNNI) two tiles into buffers, then the quantizer over them.
  const bool vnni = qconv2d_kernel() == "vnni" || qconv2d_kernel() == "amx";
  const int64_t whole = vnni ? K / kNR : 0;
  if (whole > 0)
    at::parallel_for(0, M / kPairMR * whole, 8, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u)
        pair_unit(s, t, xp, op, K, u / whole * kPairMR, u % whole * kNR, inv, static_cast<int>(out_zero_point));
    });
  // Pixels [ma, mb) × channels from panel pa on: both tiles into per-thread buffers, then the quantizer over them.
  auto buffered = [&](int64_t ma, int64_t mb, int64_t pa) {
    if (ma >= mb || pa >= panels) return;
    const int64_t c0 = pa * kNR;
    at::parallel_for(0, (mb - ma + kMR - 1) / kMR, 4, [&](int64_t u0, int64_t u1) {
      std::vector<float> bufs(2 * kMR * K);  // the tile's scale and shift, [pixel][K] each
      float* sbuf = bufs.data();
      float* tbuf = sbuf + kMR * K;
      const uint8_t *rs[kMR], *rt[kMR];
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t m0 = ma + u * kMR;
        const int mr = static_cast<int>(std::min<int64_t>(kMR, mb - m0));
        for (int i = 0; i < mr; ++i) {
          rs[i] = s.x + (m0 + i) * s.Cp;
          rt[i] = t.x + (m0 + i) * t.Cp;
        }
        for (int64_t panel = pa; panel < panels; ++panel) {
          const int64_t j0 = panel * kNR;
          const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
          for (int which = 0; which < 2; ++which) {
            const Branch& b = which ? t : s;
            const qconv::Store st{b.comp.data(), b.cc.mult.data(), b.cc.bias.empty() ? nullptr : b.cc.bias.data(),
                                  0, 0.f, nullptr, K, 0.f, 0, false, (which ? tbuf : sbuf) + j0, K};
            qconv::run_tile(which ? rt : rs, mr, &zero, 1, b.Cp / 4, b.packed + panel * b.panel_size, j0, ncols, st);
          }
        }
        if (c0 == 0)  // x, the buffers and the output share the layout [pixel][K]: one run of mr·K values
          qconv::quantize_floats(xp + m0 * K, mr * K, inv, fz, op + m0 * K, {sbuf, tbuf}, 0);
        else
          for (int i = 0; i < mr; ++i)
            qconv::quantize_floats(xp + (m0 + i) * K + c0, K - c0, inv, fz, op + (m0 + i) * K + c0,
                                   {sbuf + i * K + c0, tbuf + i * K + c0}, 0);
      }
    });
  };
  const int64_t paired = whole > 0 ? M / kPairMR * kPairMR : 0;
  buffered(paired, M, 0);
  buffered(0, paired, whole > 0 ? whole : panels);
  return out;
}

}  // namespace sft
