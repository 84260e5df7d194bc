// int8 direct conv: uint8 activations × int8 weights summed in int32, requantized in the store.
//
// The input is laid out once as a zero-point-padded NHWC uint8 copy with channels rounded up (to 4, or 32/64 for AMX),
// a quarter of a float copy; a float input is quantized while it is copied, so a model that keeps float tensors
// between its convs (SFT modulation, residual adds) pays one pass for it. Padding holds the zero point zx, so every
// tap reads (x − zx)·w + zx·w, and the zx·Σw the sums carry is taken back once in the store (wsum, from the packing),
// as oneDNN and XNNPACK do. Then y = (acc − zx·wsum[k]) · x_scale·w_scale[k] + bias[k] → activation → + residual →
// float32, or uint8 requantized. Tiles: AMX (32 pixels of one output row × 32 channels), AVX-512 VNNI (14 × 32, any
// pixels; up to 8 output channels: pixels in the lanes, narrow.cpp), AVX2 (exact 16-bit products), a portable loop
// (tiles.h).
#include "cpu/qconv2d/qconv2d.h"

#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "cpu/engine/isa.h"
#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/narrow.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"

namespace sft {

using qconv::kMR;
using qconv::kNR;
using qconv::Mod;

namespace {

constexpr int64_t kBandedBytes = int64_t(4) << 20;  // padded copies above this are built per band (AMX row mode)
// AMX blocks (32 pixels) run panel by panel in runs of up to this many: 4 keeps the trunk conv's weight panel
// (9 taps × 64 channels × 32 = 18 KB) in L1 across a 128-pixel row. One block at a time, alternating fresh
// processes at 1 thread: trunk 0.72-0.74 -> 0.70-0.71 ms, up1 (8 panels) 2.19-2.30 -> 2.15-2.20, hr 11.8-12.9 ->
// 11.3-11.9.
constexpr int kAmxRunBlocks = 4;

bool cpu_has_vnni() { return cpu_has("avx512") && __builtin_cpu_supports("avx512vnni"); }

bool cpu_has_amx() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return cpu_has_vnni() && (d & (1u << 24)) && (d & (1u << 25));  // AMX-TILE, AMX-INT8
}

// AVX-VNNI: vpdpbusd on 256 bits in VEX form (CPUID.(7,1):EAX[4]), which Intel's client cores have without AVX-512.
bool cpu_has_avxvnni() {
  unsigned a, b, c, d;
  return __builtin_cpu_supports("avx2") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}

enum class Kernel { kGeneric, kAvx2, kAvxVnni, kVnni, kAmx };

// The avxvnni tile on a CPU without AVX-VNNI runs vpdpbusd's EVEX form at 256 bits (AVX-512 VNNI CPUs).
bool avxvnni_evex() {
  static const bool evex = !cpu_has_avxvnni();
  return evex;
}

Kernel kernel() {
  static const Kernel k = [] {
    const char* env = std::getenv("SFT_KERNELS_INT8");
    const std::string want = env && *env ? env : "";
    if (!want.empty() && want != "amx" && want != "vnni" && want != "avxvnni" && want != "avx2" && want != "generic")
      throw std::runtime_error("SFT_KERNELS_INT8 must be amx, vnni, avxvnni, avx2 or generic, got '" + want + "'");
    // SFT_KERNELS_ISA=avx2|generic (the float kernels' choice) limits these too
    const bool isa512 = std::strcmp(ukernel().isa, "avx512") == 0, isa_avx2 = isa512 || !std::strcmp(ukernel().isa,
                                                                                                       "avx2");
    const bool amx = isa512 && cpu_has_amx() && qconv::amx_enable(), vnni = isa512 && cpu_has_vnni();
    const bool avx2 = isa_avx2 && __builtin_cpu_supports("avx2");
    const bool avxvnni = avx2 && cpu_has_avxvnni();
    const bool avxvnni_forcible = avxvnni || (avx2 && cpu_has_vnni() && __builtin_cpu_supports("avx512vl"));
    if (want == "amx" && !amx) throw std::runtime_error("SFT_KERNELS_INT8=amx: this CPU or OS does not run AMX");
    if (want == "vnni" && !vnni) throw std::runtime_error("SFT_KERNELS_INT8=vnni: this CPU has no AVX-512 VNNI");
    if (want == "avxvnni" && !avxvnni_forcible)
      throw std::runtime_error("SFT_KERNELS_INT8=avxvnni: this CPU has neither AVX-VNNI nor AVX-512 VNNI");
    if (want == "avx2" && !avx2) throw std::runtime_error("SFT_KERNELS_INT8=avx2: this CPU has no AVX2");
    if (want == "generic") return Kernel::kGeneric;
    if (want == "vnni") return Kernel::kVnni;
    if (want == "avxvnni") return Kernel::kAvxVnni;
    if (want == "avx2") return Kernel::kAvx2;
    return amx       ? Kernel::kAmx
           : vnni    ? Kernel::kVnni
           : avxvnni ? Kernel::kAvxVnni
           : avx2    ? Kernel::kAvx2
                     : Kernel::kGeneric;
  }();
  return k;
}

inline void quantize_scalar(const float* x, int64_t xs, int64_t n, float inv, float fz, uint8_t* q, int64_t qs,
                            Mod mod = {nullptr, nullptr}, int64_t off = 0) {
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i * xs];
    if (mod.scale) v = v * (mod.scale[off + i * xs] + 1.f) + mod.shift[off + i * xs];
    q[i * qs] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, std::nearbyint(v * inv) + fz)));
  }
}

// The value to round of 16 floats: (x·(scale + 1) + shift)·inv, clamped to ±512 (int32's range, and past uint8's
// with any zero point).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i quantize16(const float* x, __mmask16 m, __m512 vi,
                                                                            __m512i vz, Mod mod, int64_t off) {
  __m512 f = _mm512_maskz_loadu_ps(m, x);
  if (mod.scale)  // one fused multiply-add, written out so that qsft_modulation's registers round alike
    f = _mm512_fmadd_ps(f, _mm512_add_ps(_mm512_maskz_loadu_ps(m, mod.scale + off), _mm512_set1_ps(1.f)),
                        _mm512_maskz_loadu_ps(m, mod.shift + off));
  f = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, vi), _mm512_set1_ps(-512.f)), _mm512_set1_ps(512.f));
  return _mm512_add_epi32(_mm512_cvtps_epi32(f), vz);
}

// clamp(round(x·inv) + zero point, 0, 255), round half to even as nearbyint (the default rounding mode). 64 values
// at a time narrowed by saturating packs into one 64-byte store: a narrowing store (vpmovdb) per 16 values had
// taken most of the loop's time.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_avx512(const float* x, int64_t n, float inv,
                                                                          float fz, uint8_t* q, Mod mod,
                                                                          int64_t off) {
  const __m512 vi = _mm512_set1_ps(inv);
  const __m512i vz = _mm512_set1_epi32(static_cast<int>(fz));
  const __m512i fix = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __mmask16 all = 0xFFFF;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i a = quantize16(x + i, all, vi, vz, mod, off + i), b = quantize16(x + i + 16, all, vi, vz, mod,
                                                                                       off + i + 16);
    const __m512i c = quantize16(x + i + 32, all, vi, vz, mod, off + i + 32), d = quantize16(x + i + 48, all, vi, vz,
                                                                                             mod, off + i + 48);
    const __m512i w = _mm512_packus_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));  // saturating
    _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(fix, w));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? all : __mmask16((1u << (n - i)) - 1u);
    const __m512i v = _mm512_min_epi32(_mm512_max_epi32(quantize16(x + i, m, vi, vz, mod, off + i),
                                                        _mm512_setzero_si512()), _mm512_set1_epi32(255));
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);
  }
}

// W pixels of uint8 channels_last input (pixel pitch sw) into the padded row: each pixel's C channels and, up to
// Cp, the zero point, in whole 64-byte masked moves (a memcpy call per 32-channel pixel cost more than the copy).
__attribute__((target("avx512f,avx512bw"))) void copy_pixels_u8(const uint8_t* src, int64_t sw, int64_t W, int64_t C,
                                                               uint8_t* dst, int64_t Cp, int zx) {
  const __m512i z = _mm512_set1_epi8(static_cast<char>(zx));
  for (int64_t w = 0; w < W; ++w) {
    const uint8_t* s = src + w * sw;
    uint8_t* d = dst + w * Cp;
    for (int64_t c0 = 0; c0 < Cp; c0 += 64) {
      const int64_t nd = std::clamp<int64_t>(C - c0, 0, 64), nt = std::min<int64_t>(64, Cp - c0);
      const __mmask64 md = nd == 64 ? ~__mmask64(0) : (__mmask64(1) << nd) - 1;
      const __mmask64 mt = nt == 64 ? ~__mmask64(0) : (__mmask64(1) << nt) - 1;
      _mm512_mask_storeu_epi8(d + c0, mt, _mm512_mask_loadu_epi8(z, md, s + c0));  // masked-off bytes never fault
    }
  }
}

// The same for few-channel pixels side by side (sw = C < Cp, Cp of 4, 8 or 16: an RGB image), 64 / Cp pixels per
// 64-byte store, their bytes moved to place by one vpermb: per pixel, the masked move above cost ~2 ns, 0.09 ms of
// ResNet's 7×7 stem at 224².
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) void copy_few_channel_pixels_u8(const uint8_t* src, int64_t W,
                                                                                      int64_t C, uint8_t* dst,
                                                                                      int64_t Cp, int zx) {
  alignas(64) uint8_t idx[64];
  __mmask64 real = 0;  // the output lanes that hold a channel, not padding
  for (int j = 0; j < 64; ++j) {
    idx[j] = static_cast<uint8_t>(j / Cp * C + j % Cp);
    if (j % Cp < C) real |= __mmask64(1) << j;
  }
  const __m512i vidx = _mm512_load_si512(idx), z = _mm512_set1_epi8(static_cast<char>(zx));
  const int64_t per = 64 / Cp;
  for (int64_t w = 0; w < W; w += per) {
    const int64_t n = std::min(per, W - w), nin = n * C, nout = n * Cp;
    const __mmask64 min = nin == 64 ? ~__mmask64(0) : (__mmask64(1) << nin) - 1;
    const __mmask64 mout = nout == 64 ? ~__mmask64(0) : (__mmask64(1) << nout) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(min, src + w * C);
    _mm512_mask_storeu_epi8(dst + w * Cp, mout, _mm512_mask_permutexvar_epi8(z, real, vidx, v));
  }
}

// W pixels of NCHW float32 input with C ≤ 4 (sc: channel stride, pixels contiguous along w) quantized into the
// padded row's 4-byte pixels, the padding channels zx: 16 pixels per pass, each channel's 16 values quantized at
// once and shifted into its byte of the pixels' words (the scalar walk along each channel took 0.45 ms of an RGB
// 224² stem).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_rgb_nchw(const float* x, int64_t sc, int64_t W,
                                                                            int64_t C, float inv, float fz,
                                                                            uint8_t* dst, Mod mod, int64_t off) {
  const __m512 vi = _mm512_set1_ps(inv);
  const __m512i vz = _mm512_set1_epi32(static_cast<int>(fz)), lo = _mm512_setzero_si512(),
                hi = _mm512_set1_epi32(255);
  __m512i pad = _mm512_setzero_si512();  // zx in the bytes of the channels past C
  for (int64_t c = C; c < 4; ++c) pad = _mm512_or_si512(pad, _mm512_slli_epi32(vz, static_cast<unsigned>(8 * c)));
  for (int64_t w = 0; w < W; w += 16) {
    const __mmask16 m = W - w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (W - w)) - 1u);
    __m512i word = pad;
    for (int64_t c = 0; c < C; ++c) {
      const __m512i q =
          _mm512_min_epi32(_mm512_max_epi32(quantize16(x + c * sc + w, m, vi, vz, mod, off + c * sc + w), lo), hi);
      word = _mm512_or_si512(word, _mm512_slli_epi32(q, static_cast<unsigned>(8 * c)));
    }
    _mm512_mask_storeu_epi32(dst + w * 4, m, word);
  }
}

// Dilated tap-packed convs (tap_packed) run as a 1×1 conv over rows of each output pixel's gathered taps: Cq bytes,
// tap (r, s)'s channel group at r·RW + s·Cp. Taps side by side in the padded input are one run, and a run's bytes
// within one 64-byte segment of the row are one piece: lanes `mask` of the segment, loaded from the pixel's first
// tap + src (src counts from the segment's lane 0).
struct TapPiece {
  int64_t seg, src;
  __mmask64 mask;
};
struct Gather {
  const uint8_t* xb;  // the input (padded copy or the unpadded input itself) [N][Hp][Wp][Cp]
  int64_t P, Q, Hp, Wp, sh, sw, Cp, Cq;
  const TapPiece* pieces;  // in segment order
  int64_t npieces;
};

std::vector<TapPiece> tap_pieces(const std::vector<int64_t>& toff, int64_t Cp, int64_t S, int64_t RW) {
  std::vector<TapPiece> pieces;
  for (int64_t t = 0; t < static_cast<int64_t>(toff.size()); ++t) {
    const int64_t dst = t / S * RW + t % S * Cp;  // kernel row t / S at t / S · RW (tap_row_bytes)
    for (int64_t b = dst; b < dst + Cp;) {  // tap t's bytes [dst, dst + Cp), split at segment ends
      const int64_t seg = b / 64, e = std::min(dst + Cp, (seg + 1) * 64), lo = b % 64, w = e - b;
      const __mmask64 m = (w == 64 ? ~__mmask64(0) : ((__mmask64(1) << w) - 1)) << lo;
      const int64_t src = toff[t] + (b - dst) - lo;
      if (!pieces.empty() && pieces.back().seg == seg && pieces.back().src == src)
        pieces.back().mask |= m;  // the same source alignment: taps adjacent in the input share one load
      else
        pieces.push_back({seg, src, m});
      b = e;
    }
  }
  return pieces;
}

// Output pixels [m0, m1) of N·P·Q to rows of Cq bytes at dst: each 64-byte segment of a pixel's row built in a
// register by masked loads (lanes outside every piece stay zero and meet zero weights), then stored whole. A 4-byte
// copy per tap, with the pixel's coordinates divided out of its index, had taken most of the RGB first conv's time.
__attribute__((target("avx512f,avx512bw"))) void gather_taps(const Gather& g, int64_t m0, int64_t m1, uint8_t* dst) {
  const int64_t P = g.P, Q = g.Q, Cq = g.Cq, np = g.npieces;
  const TapPiece* pieces = g.pieces;
  int64_t n = m0 / (P * Q), p = m0 / Q % P, q = m0 % Q;
  for (int64_t m = m0; m < m1; ++m, dst += Cq) {
    const uint8_t* src = g.xb + ((n * g.Hp + p * g.sh) * g.Wp + q * g.sw) * g.Cp;
    int64_t i = 0;
    for (int64_t seg = 0; seg < Cq / 64; ++seg) {
      __m512i v = _mm512_setzero_si512();
      for (; i < np && pieces[i].seg == seg; ++i) v = _mm512_mask_loadu_epi8(v, pieces[i].mask, src + pieces[i].src);
      _mm512_storeu_si512(dst + 64 * seg, v);
    }
    next_pixel(n, p, q, P, Q);
  }
}

// A VNNI tile's input rows: output pixel (n, p, q) and the mr − 1 after it in raster order, each pixel's first tap at
// at(n, p, q). Within one output row (most tiles of a wide image) they are `step` bytes apart; only a tile that
// crosses a row end walks its pixels (the walk, per tile, had cost a few-channel 3×3 conv ~8 %).
template <class At>
inline void tile_rows(const uint8_t** rows, int mr, int64_t n, int64_t p, int64_t q, int64_t P, int64_t Q,
                      int64_t step, At at) {
  if (q + mr <= Q) {
    const uint8_t* r0 = at(n, p, q);
    for (int i = 0; i < mr; ++i) rows[i] = r0 + i * step;
    return;
  }
  for (int i = 0; i < mr; ++i, next_pixel(n, p, q, P, Q)) rows[i] = at(n, p, q);
}

}  // namespace

namespace qconv {

void quantize_floats(const float* x, int64_t n, float inv, float fz, uint8_t* q, Mod mod, int64_t off) {
  if (std::strcmp(ukernel().isa, "avx512") == 0)
    quantize_avx512(x, n, inv, fz, q, mod, off);
  else
    quantize_scalar(x, 1, n, inv, fz, q, 1, mod, off);
}

void run_tile(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
              int64_t j0, int ncols, const Store& s) {
  const Kernel kern = kernel();
  if (kern == Kernel::kVnni || kern == Kernel::kAmx)  // AMX CPUs run the few-channel convs on VNNI
    tile_vnni(rows, mr, toff, ntaps, kg, b, j0, ncols, s);
  else if (kern == Kernel::kAvxVnni)
    tile_avxvnni(rows, mr, toff, ntaps, kg, b, j0, ncols, s, avxvnni_evex());
  else if (kern == Kernel::kAvx2)
    tile_avx2(rows, mr, toff, ntaps, kg, b, j0, ncols, s);
  else
    tile_generic(rows, mr, toff, ntaps, kg, b, j0, ncols, s);
}

InputRows::InputRows(const at::Tensor& x, double x_scale, int64_t zx, int64_t ph, int64_t pw, int64_t Cp, Mod mod)
    : Hp(x.size(2) + 2 * ph), Wp(x.size(3) + 2 * pw), Cp(Cp), C_(x.size(1)), H_(x.size(2)), W_(x.size(3)), ph_(ph),
      pw_(pw), zx_(static_cast<int>(zx)), sn_(x.stride(0)), sc_(x.stride(1)), sh_(x.stride(2)), sw_(x.stride(3)),
      flt_(x.scalar_type() == at::kFloat), inv_(static_cast<float>(1.0 / x_scale)), fz_(static_cast<float>(zx)),
      xf_(flt_ ? x.data_ptr<float>() : nullptr), xu_(flt_ ? nullptr : x.data_ptr<uint8_t>()), mod_(mod) {
  v512_ = std::strcmp(ukernel().isa, "avx512") == 0;  // SFT_KERNELS_ISA=avx2|generic: the scalar copy
  whole_pixels_ = v512_ && sc_ == 1 && !flt_ && !(Cp == C_ && sw_ == C_) && __builtin_cpu_supports("avx512bw");
  few_pixels_ = whole_pixels_ && sw_ == C_ && (Cp == 4 || Cp == 8 || Cp == 16) && __builtin_cpu_supports("avx512vbmi");
  few_float_ = v512_ && flt_ && sc_ == 1 && sw_ == C_ && C_ < Cp && (Cp == 4 || Cp == 8 || Cp == 16) &&
               __builtin_cpu_supports("avx512vbmi");
  rgb_nchw_ = v512_ && flt_ && sc_ != 1 && sw_ == 1 && Cp == 4 && __builtin_cpu_supports("avx512bw");
}

void InputRows::fill(int64_t n, int64_t r, uint8_t* dst) const {
  const int64_t h = r - ph_, C = C_, W = W_;
  if (h < 0 || h >= H_) {  // a padding row
    std::memset(dst, zx_, Wp * Cp);
    return;
  }
  uint8_t* row = dst + pw_ * Cp;
  const int64_t base = n * sn_ + h * sh_, sw = sw_, sc = sc_;
  if (whole_pixels_) {  // channels_last uint8 with channel padding: every byte of the row written once
    std::memset(dst, zx_, pw_ * Cp);
    std::memset(row + W * Cp, zx_, pw_ * Cp);
    if (few_pixels_)
      copy_few_channel_pixels_u8(xu_ + base, W, C, row, Cp, zx_);
    else
      copy_pixels_u8(xu_ + base, sw, W, C, row, Cp, zx_);
    return;
  }
  if (rgb_nchw_) {
    std::memset(dst, zx_, pw_ * Cp);
    std::memset(row + W * Cp, zx_, pw_ * Cp);
    quantize_rgb_nchw(xf_ + base, sc_, W, C, inv_, fz_, row, mod_, base);
    return;
  }
  std::memset(dst, zx_, Wp * Cp);
  if (sc == 1 && !flt_ && Cp == C && sw == C) {  // channels_last uint8, no channel padding: the row at once
    std::memcpy(row, xu_ + base, W * C);
  } else if (few_float_) {  // channels_last float32 of few channels: the row quantized at once, then spread out
    thread_local std::vector<uint8_t> q;
    q.resize(W * C);
    quantize_avx512(xf_ + base, W * C, inv_, fz_, q.data(), mod_, base);
    copy_few_channel_pixels_u8(q.data(), W, C, row, Cp, zx_);
  } else if (sc == 1) {  // channels_last: a pixel's channels are contiguous
    for (int64_t w = 0; w < W; ++w) {
      if (!flt_)
        std::memcpy(row + w * Cp, xu_ + base + w * sw, C);
      else if (v512_)
        quantize_avx512(xf_ + base + w * sw, C, inv_, fz_, row + w * Cp, mod_, base + w * sw);
      else
        quantize_scalar(xf_ + base + w * sw, 1, C, inv_, fz_, row + w * Cp, 1, mod_, base + w * sw);
    }
  } else {  // NCHW: read each channel's row along w
    for (int64_t c = 0; c < C; ++c) {
      if (flt_)
        quantize_scalar(xf_ + base + c * sc, sw, W, inv_, fz_, row + c, Cp, mod_, base + c * sc);
      else
        for (int64_t w = 0; w < W; ++w) row[w * Cp + c] = xu_[base + c * sc + w * sw];
    }
  }
}

at::Tensor padded_input(const at::Tensor& x, double x_scale, int64_t zx, int64_t ph, int64_t pw, int64_t Cp,
                        int64_t slack, Mod mod) {
  const InputRows rows(x, x_scale, zx, ph, pw, Cp, mod);
  const int64_t N = x.size(0), pitch = rows.Wp * Cp;
  // From the pool: a fresh multi-MB buffer would be page-faulted in on every call.
  at::Tensor xp = pooled_empty({N * rows.Hp * pitch + slack}, x.options().dtype(at::kByte));
  uint8_t* d = xp.data_ptr<uint8_t>();
  std::memset(d + N * rows.Hp * pitch, static_cast<int>(zx), slack);
  at::parallel_for(0, N * rows.Hp, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rows.fill(r / rows.Hp, r % rows.Hp, d + r * pitch);
  });
  return xp;
}

Phases::Phases(int64_t R, int64_t S, int64_t sh_, int64_t sw_, int64_t dh, int64_t dw, int64_t Hp, int64_t Wp)
    : sh(sh_), sw(sw_), Hq((Hp + sh_ - 1) / sh_), Wq((Wp + sw_ - 1) / sw_), plane(sh_ * sw_, -1) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s) {
      int& p = plane[(r * dh % sh) * sw + s * dw % sw];
      if (p < 0) p = static_cast<int>(count++);
    }
}

std::vector<int64_t> Phases::tap_offsets(int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t Cp) const {
  std::vector<int64_t> toff(R * S);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s)
      toff[r * S + s] = ((plane[(r * dh % sh) * sw + s * dw % sw] * Hq + r * dh / sh) * Wq + s * dw / sw) * Cp;
  return toff;
}

at::Tensor phased_input(const InputRows& rows, int64_t N, const Phases& ph, int64_t slack,
                        const at::TensorOptions& opts) {
  const int64_t Cp = rows.Cp, plane_bytes = ph.Hq * ph.Wq * Cp, row_bytes = ph.Wq * Cp;
  at::Tensor xq = pooled_empty({N * ph.count * plane_bytes + slack}, opts.dtype(at::kByte));
  uint8_t* d = xq.data_ptr<uint8_t>();
  const int zx = rows.zero_point();
  std::memset(d + N * ph.count * plane_bytes, zx, slack);
  // Padded row sh·i + a goes to row i of the planes (a, ·): filled whole, then split by column phase.
  at::parallel_for(0, N * ph.Hq * ph.sh, 4, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> row(ph.sw * row_bytes, static_cast<uint8_t>(zx));  // past Wp: zx
    for (int64_t u = r0; u < r1; ++u) {
      const int64_t n = u / (ph.Hq * ph.sh), r = u % (ph.Hq * ph.sh), i = r / ph.sh, a = r % ph.sh;
      bool read = false;
      for (int64_t b = 0; b < ph.sw; ++b) read |= ph.plane[a * ph.sw + b] >= 0;
      if (!read) continue;
      if (r < rows.Hp)
        rows.fill(n, r, row.data());
      else
        std::memset(row.data(), zx, rows.Wp * Cp);
      for (int64_t b = 0; b < ph.sw; ++b) {
        const int p = ph.plane[a * ph.sw + b];
        if (p < 0) continue;
        uint8_t* dst = d + (n * ph.count + p) * plane_bytes + i * row_bytes;
        if (ph.sw == 1)
          std::memcpy(dst, row.data(), row_bytes);
        else
          for (int64_t j = 0; j < ph.Wq; ++j) std::memcpy(dst + j * Cp, row.data() + (j * ph.sw + b) * Cp, Cp);
      }
    }
  });
  return xq;
}

ChannelConstants channel_constants(const at::Tensor& w_scale, double x_scale, const c10::optional<at::Tensor>& bias,
                                   int64_t K, int64_t Kp, const char* op) {
  ChannelConstants cc;
  cc.mult.assign(Kp, 0.f);
  const at::Tensor wsc = w_scale.contiguous();
  const float* wscp = wsc.data_ptr<float>();
  for (int64_t k = 0; k < K; ++k) cc.mult[k] = static_cast<float>(static_cast<double>(wscp[k]) * x_scale);
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == K, op, ": bias must hold ", K,
                " float32 values");
    const at::Tensor bc = bias->contiguous();
    cc.bias.assign(Kp, 0.f);
    std::copy(bc.data_ptr<float>(), bc.data_ptr<float>() + K, cc.bias.begin());
  }
  return cc;
}

std::vector<int64_t> tap_offsets(int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t Wp, int64_t Cp) {
  std::vector<int64_t> toff(R * S);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s) toff[r * S + s] = (r * dh * Wp + s * dw) * Cp;
  return toff;
}

Types store_types(double out_scale, int64_t out_zero_point, c10::optional<at::ScalarType> out_dtype,
                  double res_scale, int64_t res_zero_point, const char* op) {
  Types t{};
  t.quant = out_scale > 0;
  const at::ScalarType dt = out_dtype.value_or(t.quant ? at::kByte : at::kFloat);
  TORCH_CHECK(t.quant ? (dt == at::kByte || dt == at::kChar) : (dt == at::kFloat || dt == at::kBFloat16), op,
              ": out_dtype must be uint8 or int8 with out_scale > 0, float32 or bfloat16 without, got ", dt);
  t.s8 = dt == at::kChar;
  t.bf16 = dt == at::kBFloat16;
  const int64_t zlo = t.s8 ? -128 : 0;
  TORCH_CHECK(!t.quant || (out_zero_point >= zlo && out_zero_point <= zlo + 255), op,
              ": out_zero_point must lie in [", zlo, ", ", zlo + 255, "] for a ", dt, " output");
  t.inv_out = t.quant ? static_cast<float>(1.0 / out_scale) : 0.f;
  // int8: the uint8 arithmetic with the zero point 128 higher, then 128 off each byte (the sign bit flipped), so an
  // int8 output is the uint8 one moved by 128 exactly (adding the zero point before rounding, as the stores do,
  // could otherwise round a few values differently)
  t.zo = t.quant ? static_cast<int>(out_zero_point) + (t.s8 ? 128 : 0) : 0;
  t.res_u8 = res_scale > 0;
  TORCH_CHECK(!t.res_u8 || (res_zero_point >= 0 && res_zero_point <= 255), op,
              ": a uint8 residual's zero point must lie in [0, 255]");
  t.rscale = static_cast<float>(res_scale);
  t.rzp = static_cast<int>(res_zero_point);
  return t;
}

at::ScalarType out_scalar_type(const Types& ty) {
  return ty.quant ? (ty.s8 ? at::kChar : at::kByte) : (ty.bf16 ? at::kBFloat16 : at::kFloat);
}

ConvOutput conv_output(const at::Tensor& x, int64_t N, int64_t K, int64_t P, int64_t Q, const Types& ty,
                       const c10::optional<at::Tensor>& residual, const char* op) {
  ConvOutput o;
  o.out = pooled_empty({N, K, P, Q}, x.options().dtype(out_scalar_type(ty)), at::MemoryFormat::ChannelsLast);
  if (residual.has_value()) {
    o.res = residual->contiguous(at::MemoryFormat::ChannelsLast);
    const at::ScalarType rt = ty.res_u8 ? at::kByte : at::kFloat;
    TORCH_CHECK(o.res.sizes() == o.out.sizes() && o.res.scalar_type() == rt, op, ": residual must be ", rt,
                " and shaped like the output", ty.res_u8 ? " (res_scale > 0: a uint8 residual)" : "");
  }
  return o;
}

std::pair<at::Tensor, at::Tensor> modulation_maps(const at::Tensor& x, const at::Tensor& xv,
                                                  const std::function<at::Tensor(const at::Tensor&)>& view,
                                                  const c10::optional<at::Tensor>& mod_scale,
                                                  const c10::optional<at::Tensor>& mod_shift, const char* op) {
  TORCH_CHECK(mod_scale.has_value() == mod_shift.has_value(), op, ": give both mod_scale and mod_shift");
  if (!mod_scale.has_value()) return {};
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": a modulation needs a float32 input");
  auto like_x = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == x.sizes() && t.scalar_type() == at::kFloat, op, ": ", name,
                " must be float32 and shaped like the input");
    const at::Tensor tv = view(t);
    return tv.strides() == xv.strides() ? tv : at::empty_like(xv).copy_(tv);
  };
  return {like_x(*mod_scale, "mod_scale"), like_x(*mod_shift, "mod_shift")};
}

}  // namespace qconv

using qconv::padded_input;

std::string qconv2d_kernel() {
  switch (kernel()) {
    case Kernel::kAmx: return "amx";
    case Kernel::kVnni: return "vnni";
    case Kernel::kAvxVnni: return "avxvnni";
    case Kernel::kAvx2: return "avx2";
    default: return "generic";
  }
}

int64_t qconv2d_channel_align(int64_t C) {
  if (kernel() != Kernel::kAmx || C < 16) return 4;
  return C <= 32 ? 32 : 64;  // AMX chunks of 32 or 64 bytes
}

// Few-channel convs on AMX (the RGB first conv, SFTNet's 8-channel condition stem, ResNet's 7×7 stem): their taps ×
// channels fit in at most four 64-byte chunks, so they run with taps as channels instead of 4 channels per step on
// VNNI (the ResNet stem, 1 thread: 1.14 ms there). Each tap keeps the padded copy's 4-aligned channel group (C4
// bytes, whole 32-bit words), and each kernel row's S·C4 bytes start a chunk of RW = 32 (or a multiple of 64) bytes
// (the 7×7 stem: 7 rows of 28 bytes in 32). Undilated convs read a kernel row's taps straight from the padded input
// as one chunk of a tile row (row taps in qconv2d_cpu: the stem 0.50 → 0.32-0.41 ms); dilated ones gather each
// output pixel's taps into a row of that layout first and run as a 1×1 over the rows.
int64_t tap_row_bytes(int64_t C, int64_t S) {
  const int64_t bytes = S * ((C + 3) / 4 * 4);
  return bytes <= 32 ? 32 : (bytes + 63) / 64 * 64;
}

bool tap_packed(int64_t C, int64_t R, int64_t S) {
  return kernel() == Kernel::kAmx && C < 16 && R * S > 1 && R * tap_row_bytes(C, S) <= 256;
}

// Bytes of a tap-packed conv's row (Cq): its R kernel rows' chunks, rounded as qconv2d_pack rounds channels.
int64_t tap_row_channels(int64_t C, int64_t R, int64_t S) {
  const int64_t Cr = R * tap_row_bytes(C, S), align = qconv2d_channel_align(Cr);
  return (Cr + align - 1) / align * align;
}

int64_t qconv2d_packed_numel(int64_t K, int64_t C, int64_t R, int64_t S) {
  const int64_t panels = (K + kNR - 1) / kNR;
  if (tap_packed(C, R, S)) return panels * tap_row_channels(C, R, S) * kNR;
  const int64_t align = qconv2d_channel_align(C);
  return panels * R * S * ((C + align - 1) / align * align) * kNR;
}

std::vector<at::Tensor> qconv2d_pack(const at::Tensor& w_q) {
  TORCH_CHECK(w_q.dim() == 4 && w_q.scalar_type() == at::kChar,
              "sft_cpu::qconv2d_pack: weight must be int8 [K, C, R, S]");
  if (tap_packed(w_q.size(1), w_q.size(2), w_q.size(3))) {
    // As a 1×1 over rows of R chunks of RW bytes (tap_row_bytes): kernel row r's (s, c4) bytes at r·RW, padded
    // channels and the rest of each chunk zero, so the bytes a row-tap tile reads past a kernel row's taps (the next
    // input pixels) meet zero weights.
    const int64_t K = w_q.size(0), C4 = (w_q.size(1) + 3) / 4 * 4, R = w_q.size(2), S = w_q.size(3);
    const int64_t RW = tap_row_bytes(w_q.size(1), S);
    at::Tensor w4 = at::zeros({K, C4, R, S}, w_q.options());
    w4.narrow(1, 0, w_q.size(1)).copy_(w_q);
    at::Tensor rows = at::zeros({K, R, RW}, w_q.options());
    rows.narrow(2, 0, S * C4).copy_(w4.permute({0, 2, 3, 1}).reshape({K, R, S * C4}));
    return qconv2d_pack(rows.view({K, R * RW, 1, 1}));
  }
  const at::Tensor w = w_q.contiguous();
  const int64_t K = w.size(0), C = w.size(1), RS = w.size(2) * w.size(3), align = qconv2d_channel_align(C);
  const int64_t Cp = (C + align - 1) / align * align, panels = (K + kNR - 1) / kNR, kg = Cp / 4;
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

at::Tensor qconv2d_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                       const at::Tensor& wsum, const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                       int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                       int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                       double out_scale, int64_t out_zero_point, const c10::optional<at::Tensor>& mod_scale,
                       const c10::optional<at::Tensor>& mod_shift, int64_t pixel_shuffle,
                       c10::optional<at::ScalarType> out_dtype, double res_scale, int64_t res_zero_point) {
  TORCH_CHECK(x.dim() == 4 && (x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat) && x.device().is_cpu(),
              "sft_cpu::qconv2d: input must be a uint8 or float32 [N, C, H, W] CPU tensor");
  TORCH_CHECK(packed.scalar_type() == at::kChar && wsum.scalar_type() == at::kInt &&
                  w_scale.scalar_type() == at::kFloat,
              "sft_cpu::qconv2d: packed weights come from qconv2d_pack; w_scale is float32");
  TORCH_CHECK(x_scale > 0, "sft_cpu::qconv2d: x_scale must be positive");
  TORCH_CHECK(x_zero_point >= 0 && x_zero_point <= 255, "sft_cpu::qconv2d: x_zero_point must lie in [0, 255]");
  const qconv::Types ty = qconv::store_types(out_scale, out_zero_point, out_dtype, res_scale, res_zero_point,
                                             "sft_cpu::qconv2d");
  // A strided 1×1 conv without padding reads every stride-th pixel: it runs as a stride-1 conv on that view (the
  // padded copy takes it). Not on AMX, where the phase planes below take it with one copy instead of two.
  const bool sub = R == 1 && S == 1 && padding[0] == 0 && padding[1] == 0 && (stride[0] > 1 || stride[1] > 1) &&
                   !(kernel() == Kernel::kAmx && qconv2d_channel_align(x.size(1)) >= 32);
  const auto fmt = x.is_contiguous(at::MemoryFormat::ChannelsLast) ? at::MemoryFormat::ChannelsLast
                                                                    : at::MemoryFormat::Contiguous;
  auto view = [&](const at::Tensor& t) {  // dense, so the modulation maps index like the input
    return sub ? t.slice(2, 0, t.size(2), stride[0]).slice(3, 0, t.size(3), stride[1]).contiguous(fmt) : t;
  };
  const at::Tensor xv = view(x);
  const int64_t N = xv.size(0), C = xv.size(1), H = xv.size(2), W = xv.size(3), K = w_scale.size(0);
  const int64_t align = qconv2d_channel_align(C), Cp = (C + align - 1) / align * align, kg = Cp / 4, RS = R * S;
  const int64_t panels = (K + kNR - 1) / kNR;
  TORCH_CHECK(packed.numel() == qconv2d_packed_numel(K, C, R, S) && wsum.numel() == panels * kNR,
              "sft_cpu::qconv2d: packed weights do not match K=", K, ", C=", C, ", R=", R, ", S=", S,
              " (pack them with qconv2d_pack in this process)");
  const int64_t sh = sub ? 1 : stride[0], sw = sub ? 1 : stride[1], ph = padding[0], pw = padding[1];
  const int64_t dh = dilation[0], dw = dilation[1];
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1, Q = (W + 2 * pw - dw * (S - 1) - 1) / sw + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::qconv2d: the input is too small for the kernel");
  // PixelShuffle(r) of sub-pixel-ordered output channels: written to their shuffled places by the VNNI tile's
  // store where each 32-channel panel lies in one sub-pixel (no residual), else shuffled after the conv.
  const int64_t r = pixel_shuffle, Cs = K / (r * r);
  TORCH_CHECK(r >= 1 && K % (r * r) == 0, "sft_cpu::qconv2d: pixel_shuffle must be >= 1 and divide K into r² groups");
  const bool fused_shuffle = r > 1 && kernel() == Kernel::kVnni && Cs % kNR == 0 && !residual.has_value();
  if (r > 1 && !fused_shuffle) {
    const at::Tensor y = qconv2d_cpu(x, x_scale, x_zero_point, packed, wsum, w_scale, bias, R, S, stride, padding,
                                     dilation, activation, negative_slope, residual, out_scale, out_zero_point,
                                     mod_scale, mod_shift, 1, out_dtype, res_scale, res_zero_point);
    return shuffle_sub_pixels(y, r);
  }
  const auto [out, res] = fused_shuffle
                              ? qconv::ConvOutput{pooled_empty({N, Cs, P * r, Q * r},
                                                               x.options().dtype(qconv::out_scalar_type(ty)),
                                                               at::MemoryFormat::ChannelsLast),
                                                  at::Tensor()}
                              : qconv::conv_output(x, N, K, P, Q, ty, residual, "sft_cpu::qconv2d");
  if (N == 0 || K == 0) return out;
  const auto [ms, mt] = qconv::modulation_maps(x, xv, view, mod_scale, mod_shift, "sft_cpu::qconv2d");
  const Mod mod{ms.defined() ? ms.data_ptr<float>() : nullptr, mt.defined() ? mt.data_ptr<float>() : nullptr};

  const Kernel kern = kernel();
  const bool amx = kern == Kernel::kAmx && align >= 32;
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;
  const bool tapped = tap_packed(C, R, S);
  // Undilated tap-packed convs read each kernel row's S taps (S·Cp contiguous bytes of the padded input) as one
  // RW-byte chunk of an AMX tile, whose rows, one output pixel each, sit sw·Cp bytes apart and overlap: no gather.
  // The chunk's bytes past the taps (the next pixels) meet zero weights (qconv2d_pack).
  const int64_t RW = tapped ? tap_row_bytes(C, S) : 0;
  const bool row_taps = tapped && dw == 1;
  const int64_t slack = amx ? (32 * sw + S * dw + 33) * Cp  // the last AMX tiles read past the image
                            : row_taps ? 33 * sw * Cp + RW : 0;
  // Few output channels (an RGB output conv): pixels in the lanes instead of 32-channel panels mostly empty. On AMX
  // CPUs only up to 4 outputs from up to 64 channels, where it measured faster than AMX blocks (SFTNet's 64→3 at
  // 512², 1 thread: 5.2 → 4.8 ms; 64→3 at 128² 0.38 → 0.30-0.35; 32→1 1×1 0.125 → 0.056), not 128→2 (0.35 → 0.41)
  // or 64→8 (0.38 → 0.44). (Tap-packed weights are laid out for the AMX blocks.)
  const bool narrow =
      (kern == Kernel::kVnni || (kern == Kernel::kAmx && K <= 4 && C <= 64 && !tapped)) && qconv::narrow_fits(K, sw);
  const bool flat_pays = sh == 1 && sw == 1 && (P * Wp + 31) / 32 < P * ((Q + 31) / 32);
  // A uint8 channels_last input that needs neither spatial nor channel padding is read in place, with no copy: by
  // the tiles of a 1×1 conv (SFTNet's SFT layers: 0.5 MB per call), where the last block's 32 tile rows end inside
  // it, and by the gather of a tap-packed conv (SFTNet's 8-channel k4s4 stem: 2 MB).
  const bool unpadded = ph == 0 && pw == 0 && !mod.scale && Cp == C && xv.scalar_type() == at::kByte &&
                        xv.stride(1) == 1 && xv.stride(3) == C && xv.stride(2) == W * C &&
                        (N == 1 || xv.stride(0) == H * W * C);
  // The VNNI / AVX2 / portable tiles and the tap gather (never AMX blocks: under 16 channels) read exactly Cp bytes
  // per tap of each pixel, so they read any unpadded input in place (SFTNet's 32-channel SFT convs on Zen 4: a 0.5
  // MB copy of a 0.3 ms conv); AMX blocks only 1×1 convs whose last block ends inside the input.
  const bool direct = !narrow && unpadded &&
                      (!amx || (R == 1 && S == 1 && (Q % 32 == 0 || (flat_pays && P * Q % 32 == 0)))) &&
                      // row taps in place: row mode only, every block whole, the last chunk inside the row
                      (!row_taps || (!flat_pays && Q % 32 == 0 && (Q - 1) * sw * Cp + RW <= W * Cp));
  // Images whose padded copy would not stay in cache (SFTNet's 512² HR convs: 16 MB), in AMX row mode: each thread
  // copies a band of padded rows into its own buffer right before its tiles read them (L2), instead of one
  // whole-image copy written to and read back from DRAM.
  const bool big = !narrow && !tapped && !direct && N * Hp * Wp * Cp > kBandedBytes;
  // Strided convs on AMX whose copy fits the budget run in flat mode over phase planes (Phases) where that takes
  // fewer blocks than row mode.
  const qconv::Phases phases(R, S, sh, sw, dh, dw, Hp, Wp);
  const bool phased = amx && !tapped && !direct && !big && (sh > 1 || sw > 1) &&
                      (P * phases.Wq + 31) / 32 < P * ((Q + 31) / 32);
  const bool banded = big && amx && !flat_pays;
  // The same for the VNNI / AVX2 / portable tiles (SFTNet's 512² HR conv: a 17 MB copy through DRAM at 2 threads).
  const bool banded_tiles = big && !amx;
  const qconv::InputRows in_rows(xv, x_scale, x_zero_point, ph, pw, Cp, mod);
  const at::Tensor xp = banded || banded_tiles || direct || narrow ? at::Tensor()
                        : phased ? qconv::phased_input(in_rows, N, phases, slack, x.options())
                                 : padded_input(xv, x_scale, x_zero_point, ph, pw, Cp, slack, mod);

  // Per-channel constants padded to whole panels (plain vectors: ATen ops on these tiny tensors cost more).
  const int64_t Kp = panels * kNR;
  std::vector<int32_t> comp(Kp);
  const int32_t* wsp = wsum.data_ptr<int32_t>();
  for (int64_t k = 0; k < Kp; ++k) comp[k] = wsp[k] * static_cast<int32_t>(x_zero_point);
  const auto [mult, bpad] = qconv::channel_constants(w_scale, x_scale, bias, K, Kp, "sft_cpu::qconv2d");
  const std::vector<int64_t> toff =
      phased ? phases.tap_offsets(R, S, dh, dw, Cp) : qconv::tap_offsets(R, S, dh, dw, Wp, Cp);

  const uint8_t* xb = direct ? xv.data_ptr<uint8_t>() : xp.defined() ? xp.data_ptr<uint8_t>() : nullptr;
  const int8_t* bb = packed.data_ptr<int8_t>();
  const qconv::Store base{comp.data(), mult.data(), bpad.empty() ? nullptr : bpad.data(), static_cast<int>(activation),
                          static_cast<float>(negative_slope), nullptr, K, nullptr, K, ty};
  const void* rp = res.defined() ? res.data_ptr() : nullptr;
  uint8_t* ob = static_cast<uint8_t*>(out.data_ptr());
  if (narrow) {
    qconv::run_narrow(in_rows, {N, P, Q, K, R, S, sh, dh, dw, bb, comp.data(), mult.data(),
                                bpad.empty() ? nullptr : bpad.data(), static_cast<int>(activation),
                                static_cast<float>(negative_slope), rp, ty, ob});
    return out;
  }
  const int64_t esize = ty.out_size(), panel_size = packed.numel() / panels;
  auto at_pixel = [&](const qconv::Store& b0, int64_t m, int64_t j0) {
    qconv::Store st = b0;
    st.res = qconv::advance(rp, m * K + j0, ty.res_size());
    st.out = ob + (m * K + j0) * esize;
    return st;
  };
  // The store of the VNNI / portable tiles for mr pixels from m0, panel j0 (pix: room for kMR offsets): at_pixel's,
  // or with a fused shuffle each pixel's sub-pixel block of the shuffled output.
  auto tile_store = [&](int64_t m0, int mr, int64_t j0, int64_t* pix) {
    if (!fused_shuffle) return at_pixel(base, m0, j0);
    qconv::Store st = base;
    const int64_t sp = j0 / Cs, c0 = j0 % Cs;  // the panel's sub-pixel (row sp / r, column sp % r) and channel
    st.out = ob + ((sp / r * Q * r + sp % r) * Cs + c0) * esize;
    int64_t n = m0 / (P * Q), p = m0 % (P * Q) / Q, q = m0 % Q;
    for (int i = 0; i < mr; ++i, next_pixel(n, p, q, P, Q)) pix[i] = ((n * P * r + p * r) * Q * r + q * r) * Cs;
    st.pix = pix;
    return st;
  };

  // The AMX block's view of the input: the padded image; its phase planes, a stride-1 image of count·Hq rows of Wq
  // pixels (the flat grid's rows are the first plane's); for undilated tap-packed convs the padded image with one
  // tap per kernel row (row_taps); for dilated ones rows of each output pixel's gathered taps, run as a 1×1 conv
  // over M = N·P·Q "pixels" of Cq channels. Each thread gathers the rows of its run of blocks into its own buffer
  // right before their tiles read them (in L1 / L2, not a whole-image copy).
  int64_t gN = N, gP = P, gQ = Q, gHp = Hp, gWp = Wp, gsh = sh, gsw = sw, gCp = Cp, gRS = RS;
  std::vector<int64_t> gtoff = toff;
  const uint8_t* gxb = xb;
  std::vector<TapPiece> pieces;
  Gather ga{};
  if (phased) {
    gHp = phases.count * phases.Hq;
    gWp = phases.Wq;
    gsh = gsw = 1;
  }
  const bool gathered = tapped && !row_taps;
  if (row_taps) {
    gRS = R;
    gtoff.resize(R);
    for (int64_t i = 0; i < R; ++i) gtoff[i] = i * dh * Wp * Cp;
  }
  if (gathered) {
    const int64_t M = N * P * Q, Cq = tap_row_channels(C, R, S);  // Cp = C4 here
    pieces = tap_pieces(toff, Cp, S, RW);
    ga = {xb, P, Q, Hp, Wp, sh, sw, Cp, Cq, pieces.data(), static_cast<int64_t>(pieces.size())};
    gN = gP = gHp = gsh = gsw = gRS = 1;
    gQ = M;
    gWp = M + 33;
    gCp = Cq;
    gtoff = {0};
    gxb = nullptr;
  }

  if (amx || tapped) {
    // Units of 32 pixels at one input pitch. Row mode: 32 pixels of one output row. Flat mode (stride 1, when it
    // takes fewer units: narrow images, ResNet's 7×7 and 14×14): 32 consecutive positions of the padded-width grid
    // P × Wp, whose first taps sit one pixel apart across rows too; the 2·pw positions per row that fall on padding
    // are computed and not stored.
    const int64_t qb = (gQ + 31) / 32, fb = (gP * gWp + 31) / 32;
    // bytes of channels per tile step, and steps per tap
    const int chunk = row_taps ? (RW == 32 ? 32 : 64) : gCp % 64 == 0 ? 64 : 32;
    const int64_t chunks = row_taps ? RW / chunk : gCp / chunk;
    const bool flat = gsh == 1 && gsw == 1 && fb < gP * qb;
    // A thread's pipeline: the tiles of one block multiply while the previous block's sums are stored.
    struct Pipe {
      alignas(64) int32_t acc[2][32 * kNR];
      int32_t rows[2][32];
      qconv::StoreJob job{};
      int buf = 0;
      bool have = false;
    };
    // A run of blocks: each block's input (a), pixels (mr), first output pixel (m0) and, in flat mode, where its
    // pixels' outputs go (rows, < 0: none).
    struct Blk {
      const uint8_t* a;
      int mr;
      int64_t m0;
      int32_t rows[32];
    };
    // Panel by panel over the run's blocks, so a panel's weights (R·S·Cp × 32 bytes) stay in L1 across the blocks
    // instead of every panel streaming in from L2 for each block.
    auto run_blocks = [&](Pipe& pp, const Blk* blk, int nblk) {
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * kNR;
        for (int g = 0; g < nblk; ++g) {
          qconv::block_amx(blk[g].a, gsw * gCp, gtoff.data(), gRS, chunks, chunk, bb + panel * panel_size);
          if (pp.have) qconv::store_block(pp.job.acc, pp.job.mr, pp.job.j0, pp.job.ncols, pp.job.s);
          qconv::block_amx_store(pp.acc[pp.buf]);
          pp.job = {pp.acc[pp.buf], blk[g].mr, j0, static_cast<int>(std::min<int64_t>(kNR, K - j0)),
                    at_pixel(base, blk[g].m0, j0)};
          if (flat) {
            std::copy(blk[g].rows, blk[g].rows + blk[g].mr, pp.rows[pp.buf]);
            pp.job.s.rows = pp.rows[pp.buf];
          }
          pp.have = true;
          pp.buf ^= 1;
        }
      }
    };
    auto finish = [&](Pipe& pp) {
      if (pp.have) qconv::store_block(pp.job.acc, pp.job.mr, pp.job.j0, pp.job.ncols, pp.job.s);
    };
    // Blocks per run: up to kAmxRunBlocks, fewer where runs would be too few to keep every thread busy.
    const int64_t all_blocks = gN * (flat ? fb : gP * qb);
    const int G = static_cast<int>(std::clamp<int64_t>(all_blocks / (4 * at::get_num_threads()), 1, kAmxRunBlocks));
    if (banded) {
      // Bands of output rows whose padded input rows fill about kBandedBytes / 2 (L2 with the tiles' traffic).
      const int64_t pitch = Wp * Cp, span = (R - 1) * dh + 1;
      const int64_t most = std::clamp<int64_t>((kBandedBytes / 2 / pitch - span) / sh + 1, 1, P);
      const int64_t threads = at::get_num_threads();  // a whole number of bands per thread and image
      const int64_t nb = ((P + most - 1) / most + threads - 1) / threads * threads;
      const int64_t band = (P + nb - 1) / nb;
      at::parallel_for(0, N * nb, 1, [&](int64_t b0, int64_t b1) {
        qconv::amx_configure(chunk);
        const int64_t rows_max = (band - 1) * sh + span;
        at::Tensor buf_t = pooled_empty({rows_max * pitch + slack}, x.options().dtype(at::kByte));
        uint8_t* buf = buf_t.data_ptr<uint8_t>();
        std::memset(buf + rows_max * pitch, static_cast<int>(x_zero_point), slack);
        Pipe pp;
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t n = b / nb, pa = (b % nb) * band, pz = std::min(P, pa + band);
          if (pa >= pz) continue;  // rounding the band count up to the threads can leave the last ones empty
          const int64_t rlo = pa * sh, rhi = (pz - 1) * sh + span;
          if (pp.have) {  // the pending store reads acc, not the buffer: flush before overwriting rows anyway
            finish(pp);
            pp.have = false;
          }
          for (int64_t r = rlo; r < rhi; ++r) in_rows.fill(n, r, buf + (r - rlo) * pitch);
          if (rhi - rlo < rows_max)  // the last band is shorter: what its tiles read past it must be readable
            std::memset(buf + (rhi - rlo) * pitch, static_cast<int>(x_zero_point), (rows_max - (rhi - rlo)) * pitch);
          for (int64_t p = pa; p < pz; ++p)
            for (int64_t q0 = 0; q0 < Q; q0 += 32 * G) {
              Blk blk[kAmxRunBlocks];
              int nblk = 0;
              for (int64_t q = q0; q < std::min(Q, q0 + 32 * G); q += 32, ++nblk)
                blk[nblk] = {buf + ((p * sh - rlo) * Wp + q * sw) * Cp, static_cast<int>(std::min<int64_t>(32, Q - q)),
                             (n * P + p) * Q + q, {}};
              run_blocks(pp, blk, nblk);
            }
        }
        finish(pp);
        qconv::amx_release();
      });
      return out;
    }
    const int64_t fg = (fb + G - 1) / G, qg = (qb + G - 1) / G;  // runs of G blocks per image / per output row
    const int64_t units = gN * (flat ? fg : gP * qg);
    at::parallel_for(0, units, 1, [&](int64_t u0, int64_t u1) {
      qconv::amx_configure(chunk);
      Pipe pp;
      Blk blk[kAmxRunBlocks];
      // Tap-packed: the run's gathered rows, and 32 more that its last tiles may read past them.
      std::vector<uint8_t> tbuf_store(gathered ? (kAmxRunBlocks * 32 + 32) * gCp + 64 : 0, 0);
      uint8_t* tbuf =
          reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(tbuf_store.data()) + 63) & ~uintptr_t(63));
      for (int64_t u = u0; u < u1; ++u) {
        int nblk = 0;
        if (flat) {
          const int64_t n = u / fg;
          for (int64_t b = (u % fg) * G; b < std::min(fb, (u % fg + 1) * G); ++b, ++nblk) {
            const int64_t v0 = b * 32;
            Blk& bk = blk[nblk];
            bk = {gxb + (n * gHp * gWp + v0) * gCp, static_cast<int>(std::min<int64_t>(32, gP * gWp - v0)), n * gP * gQ,
                 {}};
            for (int i = 0; i < bk.mr; ++i) {
              const int64_t p = (v0 + i) / gWp, q = (v0 + i) % gWp;
              bk.rows[i] = q < gQ ? static_cast<int32_t>(p * gQ + q) : -1;
            }
          }
        } else {
          const int64_t n = u / (gP * qg), p = (u / qg) % gP;
          const int64_t b0 = (u % qg) * G, b1 = std::min(qb, (u % qg + 1) * G);
          if (gathered) gather_taps(ga, b0 * 32, std::min(gQ, b1 * 32), tbuf);
          for (int64_t b = b0; b < b1; ++b, ++nblk) {
            const int64_t q0 = b * 32;
            const uint8_t* a =
                gathered ? tbuf + (q0 - b0 * 32) * gCp : gxb + ((n * gHp + p * gsh) * gWp + q0 * gsw) * gCp;
            blk[nblk] = {a, static_cast<int>(std::min<int64_t>(32, gQ - q0)), (n * gP + p) * gQ + q0, {}};
          }
        }
        run_blocks(pp, blk, nblk);
      }
      finish(pp);
      qconv::amx_release();
    });
    return out;
  }

  const int64_t M = N * P * Q, mtiles = (M + kMR - 1) / kMR, PQ = P * Q;
  if (banded_tiles) {
    // Bands of output rows whose padded input rows fill about kBandedBytes / 2, a whole number per thread and
    // image; each thread fills its band's rows right before its tiles (of up to 14 pixels within the band) read them.
    const int64_t pitch = Wp * Cp, span = (R - 1) * dh + 1;
    const int64_t most = std::clamp<int64_t>((kBandedBytes / 2 / pitch - span) / sh + 1, 1, P);
    const int64_t threads = at::get_num_threads();
    const int64_t nb = ((P + most - 1) / most + threads - 1) / threads * threads;
    const int64_t band = (P + nb - 1) / nb;
    at::parallel_for(0, N * nb, 1, [&](int64_t b0, int64_t b1) {
      const int64_t rows_max = (band - 1) * sh + span;
      at::Tensor buf_t = pooled_empty({rows_max * pitch}, x.options().dtype(at::kByte));
      uint8_t* buf = buf_t.data_ptr<uint8_t>();
      const uint8_t* rows[kMR];
      int64_t pix[kMR];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n = b / nb, pa = (b % nb) * band, pz = std::min(P, pa + band);
        if (pa >= pz) continue;  // rounding the band count up to the threads can leave the last ones empty
        for (int64_t r = pa * sh; r < (pz - 1) * sh + span; ++r) in_rows.fill(n, r, buf + (r - pa * sh) * pitch);
        const int64_t ma = (n * P + pa) * Q, mz = (n * P + pz) * Q;
        for (int64_t m0 = ma; m0 < mz; m0 += kMR) {
          const int mr = static_cast<int>(std::min<int64_t>(kMR, mz - m0));
          tile_rows(rows, mr, n, m0 % PQ / Q, m0 % Q, P, Q, sw * Cp, [&](int64_t, int64_t p, int64_t q) {
            return buf + ((p - pa) * sh * Wp + q * sw) * Cp;
          });
          for (int64_t panel = 0; panel < panels; ++panel) {
            const int64_t j0 = panel * kNR;
            const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
            qconv::run_tile(rows, mr, toff.data(), RS, kg, bb + panel * panel_size, j0, ncols,
                            tile_store(m0, mr, j0, pix));
          }
        }
      }
    });
    return out;
  }
  // Work items: a tile of pixels × a group of panels. Few tiles (ResNet's 7×7 layers: 4 tiles) are split by panels
  // too, else they ran on one thread.
  const int64_t threads = at::get_num_threads();
  const int64_t pgroups = std::clamp<int64_t>((4 * threads + mtiles - 1) / mtiles, 1, panels);
  const bool linear_rows = sh == 1 && sw == 1 && Hp == P && Wp == Q;

  at::parallel_for(0, mtiles * pgroups, pgroups > 1 ? 1 : 4, [&](int64_t u0, int64_t u1) {
    const uint8_t* rows[kMR];
    int64_t pix[kMR];
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t mt = u / pgroups, pg = u % pgroups, m0 = mt * kMR;
      const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m0));
      // Walked, not divided per pixel: a 32→32 1×1 tile's multiplies take only ~220 cycles. An unpadded stride-1
      // 1×1 conv's pixels are consecutive rows of the input (the walk had taken 12 % of such a conv's time).
      if (linear_rows)
        for (int i = 0; i < mr; ++i) rows[i] = xb + (m0 + i) * Cp;
      else
        tile_rows(rows, mr, m0 / PQ, m0 % PQ / Q, m0 % Q, P, Q, sw * Cp, [&](int64_t n, int64_t p, int64_t q) {
          return xb + ((n * Hp + p * sh) * Wp + q * sw) * Cp;
        });
      const int64_t pa = pg * panels / pgroups, pz = (pg + 1) * panels / pgroups;
      for (int64_t panel = pa; panel < pz; ++panel) {
        const int64_t j0 = panel * kNR;
        const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
        // The next tile's input lines, a share before each panel: the tiles of a 1×1 conv read each input row
        // once, and over ~1 MB the hardware prefetcher left the first step of each tile waiting on L3 (128→128 at
        // 128², 1 thread: 1.73 → 1.54 ms; ResNet-50's 1×1 convs 1-8 % faster).
        if (linear_rows && m0 + 2 * kMR <= M) {
          const char* next = reinterpret_cast<const char*>(xb + (m0 + kMR) * Cp);
          const int64_t lines = kMR * Cp / 64, per = (lines + (pz - pa) - 1) / (pz - pa);
          for (int64_t l = (panel - pa) * per; l < std::min(lines, (panel - pa + 1) * per); ++l)
            __builtin_prefetch(next + 64 * l, 0, 3);
        }
        qconv::run_tile(rows, mr, toff.data(), RS, kg, bb + panel * panel_size, j0, ncols,
                        tile_store(m0, mr, j0, pix));
      }
    }
  });
  return out;
}

}  // namespace sft
