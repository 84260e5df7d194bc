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
//
// qsft_layer_cpu runs the whole layer: each work item (chunk_pixels) first runs the two first 1×1 convs of the
// condition map (activation and requantization in their store) into per-thread uint8 buffers, which the tiles
// above then read: the first convs' outputs are never written to memory either, and one call replaces three.
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {

namespace {

using qconv::kMR;
using qconv::kNR;

// One 1×1 conv of the layer: its packed weights and its store's per-channel constants. x: its input map (uint8 NHWC,
// Cp bytes per pixel) where the layer reads one from memory.
struct Branch {
  at::Tensor input;  // the map itself, or its channel-padded copy
  const uint8_t* x = nullptr;
  int64_t Cp;
  const int8_t* packed;
  int64_t panel_size;
  std::vector<int32_t> comp;
  qconv::ChannelConstants cc;
};

// A C→K 1×1 conv's constants (input zero point zx, scale x_scale), checked.
Branch conv_constants(int64_t C, int64_t K, double x_scale, int64_t zx, const at::Tensor& packed,
                      const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                      const char* op, const char* name) {
  TORCH_CHECK(zx >= 0 && zx <= 255 && x_scale > 0, op, ": ", name, "'s zero point must be in [0, 255], its scale > 0");
  const int64_t panels = (K + kNR - 1) / kNR;
  TORCH_CHECK(w_scale.dim() == 1 && w_scale.size(0) == K && w_scale.scalar_type() == at::kFloat, op, ": ", name,
              "'s weight scales must be float32 [", K, "]");
  TORCH_CHECK(packed.numel() == qconv2d_packed_numel(K, C, 1, 1) && wsum.numel() == panels * kNR, op, ": ", name,
              "'s packed weights do not match a ", C, "→", K, " 1×1 conv (pack them with qconv2d_pack)");
  Branch b;
  const int64_t align = qconv2d_channel_align(C);
  b.Cp = (C + align - 1) / align * align;
  b.packed = packed.data_ptr<int8_t>();
  b.panel_size = packed.numel() / panels;
  const int32_t* ws = wsum.data_ptr<int32_t>();
  b.comp.resize(panels * kNR);
  for (int64_t k = 0; k < panels * kNR; ++k) b.comp[k] = ws[k] * static_cast<int32_t>(zx);
  b.cc = qconv::channel_constants(w_scale, x_scale, bias, K, panels * kNR, op);
  return b;
}

// The map a conv reads, in place when it is contiguous NHWC without channel padding, else a channel-padded copy.
void attach_map(Branch& b, const at::Tensor& map, double x_scale, int64_t zx) {
  const bool in_place = b.Cp == map.size(1) && map.is_contiguous(at::MemoryFormat::ChannelsLast);
  b.input = in_place ? map : qconv::padded_input(map, x_scale, zx, 0, 0, b.Cp, 0, {nullptr, nullptr});
  b.x = b.input.data_ptr<uint8_t>();
}

void check_map(const at::Tensor& map, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(map.dim() == 4 && map.scalar_type() == at::kByte, op, ": ", name, " must be a uint8 [N, C, H, W] map");
  TORCH_CHECK(map.size(0) == x.size(0) && map.size(2) == x.size(2) && map.size(3) == x.size(3), op, ": ", name,
              " must have x's batch and spatial size");
}

Branch branch(const at::Tensor& mid, double x_scale, int64_t zx, const at::Tensor& packed, const at::Tensor& wsum,
              const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias, const at::Tensor& x,
              const char* name) {
  constexpr const char* op = "sft_cpu::qsft_modulation";
  check_map(mid, x, op, name);
  Branch b = conv_constants(mid.size(1), x.size(1), x_scale, zx, packed, wsum, w_scale, bias, op, name);
  attach_map(b, mid, x_scale, zx);
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
// Not inlined: inlined twice into pair_tile (the first conv's sums live across the second's loop), GCC copied
// every accumulator to a fresh register and back around each vpdpbusd (two moves per multiply).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), noinline)) void sums(
    const uint8_t* r, int64_t c, const int8_t* b, __m512i* a0, __m512i* a1) {
  __m512i acc0[kPairMR], acc1[kPairMR];
#pragma GCC unroll 8
  for (int i = 0; i < kPairMR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
  const int8_t* bp = b;
  for (int64_t g = 0; g < c / 4; ++g, bp += kNR * 4) {
    const __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bp + 64);
#pragma GCC unroll 8
    for (int i = 0; i < kPairMR; ++i) {
      int32_t word;
      std::memcpy(&word, r + i * c + 4 * g, 4);
      const __m512i a = _mm512_set1_epi32(word);
      acc0[i] = _mm512_dpbusd_epi32(acc0[i], a, b0);
      acc1[i] = _mm512_dpbusd_epi32(acc1[i], a, b1);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kPairMR; ++i) {
    a0[i] = acc0[i];
    a1[i] = acc1[i];
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

// Pixels [m0, m0 + kPairMR) × channels [j0, j0 + 32), the maps' bytes at rs / rt (everything by pointer or scalar:
// no vector crosses into the caller, which is not compiled for AVX-512).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void pair_unit(const Branch& s, const Branch& t,
                                                                               const uint8_t* rs, const uint8_t* rt,
                                                                               const float* x, uint8_t* out,
                                                                               int64_t K, int64_t m0, int64_t j0,
                                                                               float inv, int zp) {
  pair_tile(rs, s.Cp, s.packed + j0 / kNR * s.panel_size, rt, t.Cp, t.packed + j0 / kNR * t.panel_size, half2(s, j0),
            half2(t, j0), x + m0 * K + j0, out + m0 * K + j0, K, inv, zp);
}

// Pixels per work item: up to 224 (32 pair tiles, 16 tiles of the first convs), fewer where the threads would
// get under 4 items each. Measured on Zen 4, SFTNet's layer: 56-pixel items ran the 256² map 10 % slower than the
// three calls, 224 as fast, 448 slower again (the x stream from DRAM, broken up by the first convs' tiles).
int64_t chunk_pixels(int64_t M) {
  const int64_t per_thread = M / (4 * at::get_num_threads()) / kMR * kMR;
  return std::clamp<int64_t>(per_thread, kMR, 224);
}

// The modulated output and what every work item shares.
struct Target {
  const float* x;  // float32 NHWC, K per pixel
  uint8_t* out;
  int64_t K, panels, whole;  // whole: panels the pair tile runs (0: none)
  float inv, fz;
  int zp;
};

// Pixels [ma, mb) on this thread; ms / mt: the maps' bytes of pixel ma (pitch s.Cp / t.Cp). Whole 7-pixel tiles ×
// whole panels on the pair tile, the rest (a last partial panel or tile, CPUs without VNNI) as two tiles into the
// buffers bufs (2·kMR·K floats: the tile's scale and shift, [pixel][K] each), then the quantizer over them.
void modulate(const Branch& s, const Branch& t, const uint8_t* ms, const uint8_t* mt, const Target& o, int64_t ma,
              int64_t mb, float* bufs) {
  const int64_t K = o.K, paired = o.whole > 0 ? ma + (mb - ma) / kPairMR * kPairMR : ma;
  for (int64_t m0 = ma; m0 < paired; m0 += kPairMR)
    for (int64_t p = 0; p < o.whole; ++p)
      pair_unit(s, t, ms + (m0 - ma) * s.Cp, mt + (m0 - ma) * t.Cp, o.x, o.out, K, m0, p * kNR, o.inv, o.zp);
  const int64_t zero = 0;  // the one tap's offset
  float* sbuf = bufs;
  float* tbuf = bufs + kMR * K;
  auto buffered = [&](int64_t a, int64_t b, int64_t pa) {
    const uint8_t *rs[kMR], *rt[kMR];
    for (int64_t m0 = a; m0 < b && pa < o.panels; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, b - m0));
      for (int i = 0; i < mr; ++i) {
        rs[i] = ms + (m0 + i - ma) * s.Cp;
        rt[i] = mt + (m0 + i - ma) * t.Cp;
      }
      for (int64_t panel = pa; panel < o.panels; ++panel) {
        const int64_t j0 = panel * kNR;
        const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
        for (int which = 0; which < 2; ++which) {
          const Branch& br = which ? t : s;
          const qconv::Store st{br.comp.data(), br.cc.mult.data(), br.cc.bias.empty() ? nullptr : br.cc.bias.data(),
                                0, 0.f, nullptr, K, (which ? tbuf : sbuf) + j0, K, qconv::Types{}};
          qconv::run_tile(which ? rt : rs, mr, &zero, 1, br.Cp / 4, br.packed + panel * br.panel_size, j0, ncols, st);
        }
      }
      const int64_t c0 = pa * kNR;
      if (c0 == 0)  // x, the buffers and the output share the layout [pixel][K]: one run of mr·K values
        qconv::quantize_floats(o.x + m0 * K, mr * K, o.inv, o.fz, o.out + m0 * K, {sbuf, tbuf}, 0);
      else
        for (int i = 0; i < mr; ++i)
          qconv::quantize_floats(o.x + (m0 + i) * K + c0, K - c0, o.inv, o.fz, o.out + (m0 + i) * K + c0,
                                 {sbuf + i * K + c0, tbuf + i * K + c0}, 0);
    }
  };
  buffered(paired, mb, 0);
  buffered(ma, paired, o.whole);
}

// The output, checked, and the constants every work item reads.
struct Setup {
  at::Tensor xc, out;
  Target o;
};

Setup setup(const at::Tensor& x, double out_scale, int64_t out_zero_point, const char* op) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat, op, ": x must be float32 [N, C, H, W]");
  TORCH_CHECK(out_scale > 0 && out_zero_point >= 0 && out_zero_point <= 255, op,
              ": out_scale must be > 0 and out_zero_point in [0, 255]");
  Setup su;
  su.xc = x.contiguous(at::MemoryFormat::ChannelsLast);
  su.out = pooled_empty(x.sizes(), x.options().dtype(at::kByte), at::MemoryFormat::ChannelsLast);
  const int64_t K = x.size(1), panels = (K + kNR - 1) / kNR;
  const bool vnni = qconv2d_kernel() == "vnni" || qconv2d_kernel() == "amx";
  su.o = {su.xc.data_ptr<float>(), su.out.data_ptr<uint8_t>(), K, panels, vnni ? K / kNR : 0,
          static_cast<float>(1.0 / out_scale), static_cast<float>(out_zero_point), static_cast<int>(out_zero_point)};
  return su;
}

// Work items of `chunk` pixels over M pixels; body(ma, mb, bufs, mids) with the thread's scale / shift buffers
// (modulate's) and mid_bytes bytes of its own.
template <typename F>
void for_each_chunk(int64_t M, int64_t chunk, int64_t K, int64_t mid_bytes, const F& body) {
  at::parallel_for(0, (M + chunk - 1) / chunk, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> bufs(2 * kMR * K);
    std::vector<uint8_t> mids(mid_bytes);
    for (int64_t c = c0; c < c1; ++c) body(c * chunk, std::min(M, (c + 1) * chunk), bufs.data(), mids.data());
  });
}

}  // namespace

at::Tensor qsft_modulation_cpu(const at::Tensor& x, const at::Tensor& mid_s, double s_scale, int64_t s_zero_point,
                               const at::Tensor& packed_s, const at::Tensor& wsum_s, const at::Tensor& w_scale_s,
                               const c10::optional<at::Tensor>& bias_s, const at::Tensor& mid_t, double t_scale,
                               int64_t t_zero_point, const at::Tensor& packed_t, const at::Tensor& wsum_t,
                               const at::Tensor& w_scale_t, const c10::optional<at::Tensor>& bias_t, double out_scale,
                               int64_t out_zero_point) {
  const Setup su = setup(x, out_scale, out_zero_point, "sft_cpu::qsft_modulation");
  const Branch s = branch(mid_s, s_scale, s_zero_point, packed_s, wsum_s, w_scale_s, bias_s, x, "mid_s");
  const Branch t = branch(mid_t, t_scale, t_zero_point, packed_t, wsum_t, w_scale_t, bias_t, x, "mid_t");
  const int64_t M = x.size(0) * x.size(2) * x.size(3);
  if (M == 0 || su.o.K == 0) return su.out;
  for_each_chunk(M, chunk_pixels(M), su.o.K, 0, [&](int64_t ma, int64_t mb, float* bufs, uint8_t*) {
    modulate(s, t, s.x + ma * s.Cp, t.x + ma * t.Cp, su.o, ma, mb, bufs);
  });
  return su.out;
}

at::Tensor qsft_layer_cpu(const at::Tensor& x, const at::Tensor& cond, double c_scale, int64_t c_zero_point,
                          int64_t activation, double negative_slope, const at::Tensor& packed0_s,
                          const at::Tensor& wsum0_s, const at::Tensor& w_scale0_s,
                          const c10::optional<at::Tensor>& bias0_s, double s_scale, int64_t s_zero_point,
                          const at::Tensor& packed1_s, const at::Tensor& wsum1_s, const at::Tensor& w_scale1_s,
                          const c10::optional<at::Tensor>& bias1_s, const at::Tensor& packed0_t,
                          const at::Tensor& wsum0_t, const at::Tensor& w_scale0_t,
                          const c10::optional<at::Tensor>& bias0_t, double t_scale, int64_t t_zero_point,
                          const at::Tensor& packed1_t, const at::Tensor& wsum1_t, const at::Tensor& w_scale1_t,
                          const c10::optional<at::Tensor>& bias1_t, double out_scale, int64_t out_zero_point) {
  constexpr const char* op = "sft_cpu::qsft_layer";
  const Setup su = setup(x, out_scale, out_zero_point, op);
  check_map(cond, x, op, "cond");
  TORCH_CHECK(activation >= 0 && activation <= kActGeluTanh, op, ": activation must be a code in [0, 7], got ",
              activation);
  TORCH_CHECK(w_scale0_s.dim() == 1 && w_scale0_t.dim() == 1, op, ": the first convs' weight scales must be 1-D");
  const int64_t C = cond.size(1), K = su.o.K, Ks = w_scale0_s.size(0), Kt = w_scale0_t.size(0);
  // The first convs (cond → mid) store uint8 requantized for the second convs; the seconds read those bytes.
  Branch s0 = conv_constants(C, Ks, c_scale, c_zero_point, packed0_s, wsum0_s, w_scale0_s, bias0_s, op, "cond (s)");
  Branch t0 = conv_constants(C, Kt, c_scale, c_zero_point, packed0_t, wsum0_t, w_scale0_t, bias0_t, op, "cond (t)");
  const Branch s = conv_constants(Ks, K, s_scale, s_zero_point, packed1_s, wsum1_s, w_scale1_s, bias1_s, op, "mid_s");
  const Branch t = conv_constants(Kt, K, t_scale, t_zero_point, packed1_t, wsum1_t, w_scale1_t, bias1_t, op, "mid_t");
  attach_map(s0, cond, c_scale, c_zero_point);
  t0.input = s0.input;  // the same cond, the same channel padding
  t0.x = s0.x;
  const int64_t M = x.size(0) * x.size(2) * x.size(3);
  if (M == 0 || K == 0) return su.out;
  // The first convs' stores: uint8 for the map's (scale, zero point); a buffer's pixels are s.Cp / t.Cp bytes apart.
  auto first_store = [&](const Branch& f, double scale, int64_t zp, int64_t pitch) {
    return qconv::Store{f.comp.data(), f.cc.mult.data(), f.cc.bias.empty() ? nullptr : f.cc.bias.data(),
                        static_cast<int>(activation), static_cast<float>(negative_slope), nullptr, 0, nullptr, pitch,
                        qconv::uint8_out(scale, zp)};
  };
  const qconv::Store ss0 = first_store(s0, s_scale, s_zero_point, s.Cp);
  const qconv::Store st0 = first_store(t0, t_scale, t_zero_point, t.Cp);
  const int64_t zero = 0;
  const int64_t chunk = chunk_pixels(M);
  for_each_chunk(M, chunk, K, chunk * (s.Cp + t.Cp), [&](int64_t ma, int64_t mb, float* bufs, uint8_t* ms) {
    uint8_t* mt = ms + chunk * s.Cp;
    // Channels past the maps' own (padding to whole 4-byte groups) hold the zero point, as padded_input's do.
    if (s.Cp > Ks) std::memset(ms, static_cast<int>(s_zero_point), chunk * s.Cp);
    if (t.Cp > Kt) std::memset(mt, static_cast<int>(t_zero_point), chunk * t.Cp);
    const uint8_t* rows[kMR];
    for (int64_t m0 = ma; m0 < mb; m0 += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, mb - m0));
      for (int i = 0; i < mr; ++i) rows[i] = s0.x + (m0 + i) * s0.Cp;
      for (int which = 0; which < 2; ++which) {
        const Branch& f = which ? t0 : s0;
        const int64_t Kf = which ? Kt : Ks;
        uint8_t* mid = (which ? mt : ms) + (m0 - ma) * (which ? t.Cp : s.Cp);
        for (int64_t j0 = 0; j0 < Kf; j0 += kNR) {
          qconv::Store st = which ? st0 : ss0;
          st.out = mid + j0;
          qconv::run_tile(rows, mr, &zero, 1, f.Cp / 4, f.packed + j0 / kNR * f.panel_size, j0,
                          static_cast<int>(std::min<int64_t>(kNR, Kf - j0)), st);
        }
      }
    }
    modulate(s, t, ms, mt, su.o, ma, mb, bufs);
  });
  return su.out;
}

}  // namespace sft
