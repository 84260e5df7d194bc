// The bf16 conv on AMX (algorithm "bf16"): inputs and weights rounded to bfloat16, products summed in float32 by
// tdpbf16ps, the float32 epilogue of the other paths (bias, activation, residual). OpenVINO's default on AMX CPUs
// and PyTorch's torch.backends.mkldnn.conv.fp32_precision = "bf16" compute the same way. On CPUs with AVX512-BF16
// and no AMX (AMD Zen 4) this driver runs the same blocks on vectors instead (bf16_vectors.cpp).
//
// The int8 AMX block's structure (qconv2d/amx.cpp) in bf16: a block is 32 output pixels × 32 output channels in four
// 16×16 fp32 accumulator tiles. A tile row is one pixel's 32 channels (64 bytes) at one tap, read in place from a
// zero-padded NHWC bf16 copy of the input, so tileloadd gathers the implicit-GEMM A operand at the pixels' pitch
// with no im2col; B tiles are 16 rows of channel pairs of a packed 32-output panel ([tap][C/32][16][32][2]).
// Each thread copies (and rounds) a band of padded input rows into its own buffer right before its blocks read them
// (L2), so the bf16 copy is never a whole-image pass through memory.
// Blocks: 32 pixels of one output row (row mode), or for stride 1 where it takes fewer blocks (narrow images) 32
// consecutive positions of the band's padded-width grid (flat mode: positions on padding columns are computed and
// not stored). A block's sums are stored while the next block's tiles multiply.
#include <ATen/Parallel.h>
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/conv2d/amx_bf16.h"
#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/engine/pack.h"
#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {
namespace bf16 {
namespace {

constexpr int kRun = 4;     // blocks per run: a panel's weights stay in L1 across the run's blocks
constexpr int kSegs = 33;   // a flat block's pixels fall in at most this many output-row segments
constexpr int64_t kBandBytes = int64_t(1) << 20;  // a thread's padded bf16 rows: about half of L2

bool cpu_has_avx512_bf16() {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

bool cpu_has_amx_bf16() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (d & (1u << 22)) && (d & (1u << 24)) && cpu_has_avx512_bf16();  // AMX-BF16, AMX-TILE
}

}  // namespace

// (amx_bf16.h) The packing behind packed_weight: shuffle reorders the output channels so that packed channel
// (i·r + j)·K/r² + c is PyTorch's c·r² + i·r + j, each panel writing one sub-pixel of PixelShuffle(r).
at::Tensor pack_weight(const at::Tensor& w_in, int64_t Cp, int64_t shuffle) {
  const int64_t K = w_in.size(0), C = w_in.size(1), RS = w_in.size(2) * w_in.size(3), panels = (K + kNR - 1) / kNR;
  const int64_t r2 = shuffle * shuffle;
  const at::Tensor w = r2 > 1 ? w_in.reshape({K / r2, r2, C * RS}).transpose(0, 1).contiguous() : w_in;
  at::Tensor packed = at::zeros({panels * RS * Cp * kNR}, w.options().dtype(at::kShort));
  uint16_t* dst = reinterpret_cast<uint16_t*>(packed.data_ptr<int16_t>());
  const float* src = w.data_ptr<float>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < RS; ++t) {
        const int64_t pn = k / kNR, kk = k % kNR, ch = c / kCh, cc = c % kCh;
        const int64_t at = ((((pn * RS + t) * (Cp / kCh) + ch) * (kCh / 2) + cc / 2) * kNR + kk) * 2 + cc % 2;
        dst[at] = qconv::bf16_bits(src[(k * C + c) * RS + t]);
      }
  return packed;
}

// (amx_bf16.h) vcvtne2ps2bf16 rounds to nearest even and keeps NaN.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void fill_pixels(const float* x, int64_t xs,
                                                                                  const float* ms, const float* mt,
                                                                                  int64_t n, int64_t C, int64_t Cp,
                                                                                  uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i, x += xs, dst += Cp) {
    for (int64_t c = 0; c < Cp; c += 32) {
      const int64_t lo = std::clamp<int64_t>(C - c, 0, 16), hi = std::clamp<int64_t>(C - c - 16, 0, 16);
      const __mmask16 mlo = static_cast<__mmask16>((1u << lo) - 1), mhi = static_cast<__mmask16>((1u << hi) - 1);
      __m512 a = _mm512_maskz_loadu_ps(mlo, x + c), b = _mm512_maskz_loadu_ps(mhi, x + c + 16);
      if (ms) {  // rounded as the reference's x·(scale + 1) + shift, the product not fused into the add
        const int64_t o = i * xs + c;
        const __m512 one = _mm512_set1_ps(1.f);
        a = _mm512_add_ps(qconv::rounded(_mm512_mul_ps(a, _mm512_add_ps(_mm512_maskz_loadu_ps(mlo, ms + o), one))),
                          _mm512_maskz_loadu_ps(mlo, mt + o));
        const __m512 sb = _mm512_add_ps(_mm512_maskz_loadu_ps(mhi, ms + o + 16), one);
        b = _mm512_add_ps(qconv::rounded(_mm512_mul_ps(b, sb)), _mm512_maskz_loadu_ps(mhi, mt + o + 16));
      }
      _mm512_storeu_si512(dst + c, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
  }
}

namespace {

// n pixels of C bf16 channels (pixel pitch xs) into rows of Cp, zeros past C: an input handed over in bf16.
__attribute__((target("avx512f,avx512bw"))) void copy_pixels(const uint16_t* x, int64_t xs, int64_t n, int64_t C,
                                                             int64_t Cp, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i, x += xs, dst += Cp)
    for (int64_t c = 0; c < Cp; c += 32) {
      const int64_t k = std::clamp<int64_t>(C - c, 0, 32);
      const __mmask32 m = static_cast<__mmask32>(k == 32 ? 0xFFFFFFFFu : (1u << k) - 1u);
      _mm512_storeu_si512(dst + c, _mm512_maskz_loadu_epi16(m, x + c));
    }
}

// Rows [0, mr) of t (pitch 32 floats) rounded to bf16 into rows of d (pitch ld elements), nc channels each.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void round_rows(const float* t, int mr, int nc,
                                                                                 uint16_t* d, int64_t ld) {
  const __mmask32 m = static_cast<__mmask32>(nc >= 32 ? 0xFFFFFFFFu : (1u << nc) - 1u);
  for (int i = 0; i < mr; ++i)
    _mm512_mask_storeu_epi16(d + i * ld, m, (__m512i)_mm512_cvtne2ps_pbh(_mm512_load_ps(t + i * 32 + 16),
                                                                          _mm512_load_ps(t + i * 32)));
}

}  // namespace

// The block's tile multiplies: a (bf16 elements) is the block's first pixel at tap 0, pitch the bytes between its
// tile rows, toff the taps' offsets (elements), b the panel's packed weights. Each step's four tdpbf16ps read the
// tiles loaded by the step before, and each next load is issued as soon as the multiplies reading its tile are: tile
// registers are not renamed, so four loads then four multiplies per step left the loads waiting on the multiplies
// (trunk 64→64 at 128², 1 thread: 1.57 → 1.50 ms; 128→128 at 64² 1.13 → 1.05). Half: the panel's last 16 outputs
// are padding (a conv with K ≤ 16 left in its last panel: SFTNet's 64→3), so their tile and multiplies are skipped.
template <bool Half>
__attribute__((target("amx-tile,amx-bf16"))) void block_tiles(const uint16_t* a, int64_t pitch, const int64_t* toff,
                                                              int64_t ntaps, int64_t chunks, const uint16_t* b) {
  _tile_zero(0);
  _tile_zero(2);
  if (!Half) {
    _tile_zero(1);
    _tile_zero(3);
  }
  const uint16_t* a1 = a + 8 * pitch;  // 16 rows on: 16·pitch bytes
  const uint16_t* bp = b;
  _tile_loadd(4, a + toff[0], pitch);
  _tile_loadd(6, bp, kNR * 4);
  if (!Half) _tile_loadd(7, bp + kNR, kNR * 4);
  _tile_loadd(5, a1 + toff[0], pitch);
  const int64_t steps = ntaps * chunks;
  for (int64_t st = 0, t = 0, ch = 0; st < steps; ++st) {
    if (++ch == chunks) ch = 0, ++t;
    const bool more = st + 1 < steps;
    const int64_t ao = more ? toff[t] + kCh * ch : 0;
    bp += kCh * kNR;
    _tile_dpbf16ps(0, 4, 6);
    if (!Half) _tile_dpbf16ps(1, 4, 7);
    if (more) _tile_loadd(4, a + ao, pitch);
    _tile_dpbf16ps(2, 5, 6);
    if (more) _tile_loadd(6, bp, kNR * 4);
    if (!Half) _tile_dpbf16ps(3, 5, 7);
    if (more) {
      if (!Half) _tile_loadd(7, bp + kNR, kNR * 4);
      _tile_loadd(5, a1 + ao, pitch);
    }
  }
}

template void block_tiles<true>(const uint16_t*, int64_t, const int64_t*, int64_t, int64_t, const uint16_t*);
template void block_tiles<false>(const uint16_t*, int64_t, const int64_t*, int64_t, int64_t, const uint16_t*);

// The int8 block's store: its tilestored moves 4-byte sums whatever their type.
void block_sums(float* acc) { qconv::block_amx_store(reinterpret_cast<int32_t*>(acc)); }

Unit unit() {
  static const Unit u = [] {
    const bool amx = cpu_has_amx_bf16() && qconv::amx_enable(), vec = cpu_has_avx512_bf16();
    const char* env = std::getenv("SFT_KERNELS_BF16");
    const std::string want = env ? env : "";
    if (want == "amx" && !amx) throw std::runtime_error("SFT_KERNELS_BF16=amx: this CPU or OS does not run AMX-BF16");
    if (want == "vectors" && !vec) throw std::runtime_error("SFT_KERNELS_BF16=vectors: this CPU has no AVX512-BF16");
    if (!want.empty() && want != "amx" && want != "vectors")
      throw std::runtime_error("SFT_KERNELS_BF16 must be amx or vectors (or unset: the best here), got " + want);
    if (want == "vectors") return Unit::kVectors;
    return amx ? Unit::kAmx : vec ? Unit::kVectors : Unit::kNone;
  }();
  return u;
}

void begin_thread() {
  if (unit() == Unit::kAmx) qconv::amx_configure(64);
}

void end_thread() {
  if (unit() == Unit::kAmx) qconv::amx_release();
}

at::Tensor packed_weight(const at::Tensor& weight, int64_t Cp, int64_t shuffle) {
  return cached_weight_transform(weight, (int64_t(10) << 40) + Cp * 16 + shuffle,
                                 [&](const at::Tensor& w) { return pack_weight(w, Cp, shuffle); });
}

namespace {

// Accumulator rows [i0, i0 + n) go to output pixels from out (element `o` of the output, pixel pitch ldo) with
// residual res (pitch ldr, or null). (With a pixel shuffle: o and res at the pixel's sub-pixel (0, 0), channel 0.)
struct Segment {
  int i0, n;
  int64_t o;
  const float* res;
};

struct Job {
  const float* acc;
  int64_t j0;
  int ncols;
  int nseg;
  Segment seg[kSegs];
};

// iters rounds of four independent tdpbf16ps (16×16×32 multiply-adds each) on tiles loaded once: the multiplies'
// peak on this thread, no memory traffic.
__attribute__((target("amx-tile,amx-bf16"))) void peak_loop(int64_t iters, const uint16_t* a) {
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, a, 64);
  _tile_loadd(7, a, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t i = 0; i < iters; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
}

}  // namespace
}  // namespace bf16

using namespace bf16;  // NOLINT: this file's own helpers

double conv2d_bf16_peak_gflops() {
  TORCH_CHECK(conv2d_bf16_available(), "sft_cpu::conv2d_bf16_peak_gflops: this CPU has neither AMX-BF16 nor "
              "AVX512-BF16 (or the AVX-512 kernels are off)");
  if (unit() == Unit::kVectors) return vectors_peak_gflops();
  alignas(64) static const uint16_t zeros[16 * 32] = {};
  std::atomic<double> total{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t t0, int64_t t1) {
    qconv::amx_configure(64);
    constexpr int64_t kIters = 200000;
    peak_loop(kIters / 10, zeros);  // warm up
    const auto start = std::chrono::steady_clock::now();
    peak_loop(kIters, zeros);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    qconv::amx_release();
    double cur = total.load();
    while (!total.compare_exchange_weak(cur, cur + double(t1 - t0) * kIters * 4 * 16 * 16 * 32 * 2 / s / 1e9)) {
    }
  });
  return total.load();
}

bool conv2d_bf16_available() {
  static const bool ok = std::strcmp(ukernel().isa, "avx512") == 0 && ukernel().epilogue && unit() != Unit::kNone;
  return ok;
}

std::string conv2d_bf16_unit() {
  if (!conv2d_bf16_available()) return "none";
  return unit() == Unit::kAmx ? "amx" : "vectors";
}

void conv2d_bf16_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b_in, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out, const at::Tensor& mscale, const at::Tensor& mshift,
                      int64_t shuffle) {
  const bool in16 = x.scalar_type() == at::kBFloat16, out16 = out.scalar_type() == at::kBFloat16;
  TORCH_CHECK(!in16 || !mscale.defined(), "sft_cpu::conv2d: a bfloat16 input takes no modulation");
  TORCH_CHECK(conv2d_bf16_available(), "sft_cpu::conv2d: algorithm='bf16' needs AMX-BF16 tiles (Intel Xeon "
              "Sapphire Rapids or later) or AVX512-BF16 (AMD Zen 4, Intel Cooper Lake) and the AVX-512 kernels; use "
              "algorithm=None here");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t K = weight.size(0), R = weight.size(2), S = weight.size(3), RS = R * S;
  const int64_t r = shuffle, r2 = r * r, Cs = K / r2, P = out.size(2) / r, Q = out.size(3) / r;
  TORCH_CHECK(r == 1 || Cs % kNR == 0, "sft_cpu::conv2d: the bf16 store shuffles whole panels (K / r² % 32 == 0)");
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  TORCH_CHECK(ph >= 0 && pw >= 0, "sft_cpu::conv2d: algorithm='bf16' takes non-negative padding");
  const int64_t Cp = round_up(C, kCh), chunks = Cp / kCh, panels = (K + kNR - 1) / kNR;
  const int64_t Wp = W + 2 * pw, pitch = Wp * Cp, span = (R - 1) * dh + 1;
  const at::Tensor packed = packed_weight(weight, Cp, r);
  const at::Tensor b = b_in.defined() && r > 1 ? b_in.view({Cs, r2}).t().contiguous() : b_in;
  const uint16_t* wb = reinterpret_cast<const uint16_t*>(packed.data_ptr<int16_t>());
  const int64_t panel_size = RS * Cp * kNR;
  std::vector<int64_t> toff(RS);
  for (int64_t t = 0; t < RS; ++t) toff[t] = ((t / S) * dh * Wp + (t % S) * dw) * Cp;

  // Bands of output rows whose padded rows fill about kBandBytes, a whole number per thread and image.
  const int64_t most = std::clamp<int64_t>((kBandBytes / (2 * pitch) - span) / sh + 1, 1, P);
  const int64_t threads = at::get_num_threads();
  const int64_t nb = ((P + most - 1) / most + threads - 1) / threads * threads;
  const int64_t band = (P + nb - 1) / nb, rows_max = (band - 1) * sh + span;
  // What the last block's tile rows read past the band: 32 pixels at the pitch, the taps' reach, one chunk.
  const int64_t slack = (32 * sw + (S - 1) * dw + 1) * Cp + kCh;
  const bool flat_pays = sh == 1 && sw == 1 && (band * Wp + 31) / 32 < band * ((Q + 31) / 32);

  const float* xp = in16 ? nullptr : x.data_ptr<float>();
  const uint16_t* xh = in16 ? reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()) : nullptr;
  const float* msp = mscale.defined() ? mscale.data_ptr<float>() : nullptr;
  const float* mtp = mshift.defined() ? mshift.data_ptr<float>() : nullptr;
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  float* op = out16 ? nullptr : out.data_ptr<float>();
  uint16_t* oh = out16 ? reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()) : nullptr;
  const int64_t xs0 = x.stride(0), xs2 = x.stride(2), xs3 = x.stride(3);
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  const int64_t ldo = r * os3, ldr = r * rs3;  // pixel pitches of the conv's output grid
  const UKernel& uk = ukernel();
  const bool amx = unit() == Unit::kAmx;
  const int act = static_cast<int>(activation);
  const float fslope = static_cast<float>(slope);

  at::parallel_for(0, N * nb, 1, [&](int64_t u0, int64_t u1) {
    at::Tensor buf_t = pooled_empty({rows_max * pitch + slack}, x.options().dtype(at::kShort));
    uint16_t* buf = reinterpret_cast<uint16_t*>(buf_t.data_ptr<int16_t>());
    std::memset(buf + rows_max * pitch, 0, slack * sizeof(uint16_t));
    alignas(64) float acc[2][32 * kNR];
    Job job{};
    int cur = 0;
    bool have = false;
    auto store = [&](const Job& j) {
      for (int g = 0; g < j.nseg; ++g) {
        const Segment& s = j.seg[g];
        const int64_t sp = j.j0 / Cs, o0 = sp / r * os2 + sp % r * os3 + j.j0 % Cs;  // the panel's sub-pixel
        const int64_t r0 = sp / r * rs2 + sp % r * rs3 + j.j0 % Cs;
        for (int i = 0; i < s.n; i += 14) {
          const int mr = std::min(14, s.n - i);
          const int64_t at_o = s.o + i * ldo + o0;
          const float* rr = s.res ? s.res + i * ldr + r0 : nullptr;
          if (!out16) {
            uk.epilogue(j.acc + (s.i0 + i) * kNR, KOut{op + at_o, ldo, rr, ldr, bp ? bp + j.j0 : nullptr, act, fslope,
                                                       false, true, mr, j.ncols});
            continue;
          }
          alignas(64) float t[14 * kNR];  // bf16 output: the float32 epilogue, then rounded
          uk.epilogue(j.acc + (s.i0 + i) * kNR, KOut{t, kNR, rr, ldr, bp ? bp + j.j0 : nullptr, act, fslope, false,
                                                     true, mr, j.ncols});
          round_rows(t, mr, j.ncols, oh + at_o, ldo);
        }
      }
    };
    begin_thread();
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / nb, pa = (u % nb) * band, pz = std::min(P, pa + band);
      if (pa >= pz) continue;  // rounding the band count up to the threads can leave the last ones empty
      const int64_t rlo = pa * sh, rhi = (pz - 1) * sh + span;
      if (have) {  // the pending store reads acc, not the buffer; flushed anyway before the rows change
        store(job);
        have = false;
      }
      for (int64_t rr = rlo; rr < rhi; ++rr) {
        uint16_t* d = buf + (rr - rlo) * pitch;
        const int64_t ih = rr - ph;
        if (ih < 0 || ih >= H) {
          std::memset(d, 0, pitch * sizeof(uint16_t));
          continue;
        }
        std::memset(d, 0, pw * Cp * sizeof(uint16_t));
        const int64_t xo = n * xs0 + ih * xs2;
        if (in16)
          copy_pixels(xh + xo, xs3, W, C, Cp, d + pw * Cp);
        else
          fill_pixels(xp + xo, xs3, msp ? msp + xo : nullptr, mtp ? mtp + xo : nullptr, W, C, Cp, d + pw * Cp);
        std::memset(d + (pw + W) * Cp, 0, (Wp - pw - W) * Cp * sizeof(uint16_t));
      }
      // The band's blocks: (first input element, segments of output pixels), in runs of up to kRun.
      struct Blk {
        const uint16_t* a;
        int nseg;
        Segment seg[kSegs];
      };
      Blk blk[kRun];
      int nblk = 0;
      auto run = [&]() {
        for (int64_t panel = 0; panel < panels; ++panel) {
          const int64_t j0 = panel * kNR;
          for (int g = 0; g < nblk; ++g) {
            if (amx) {  // the previous block's store runs while these tiles multiply
              (K - j0 <= 16 ? block_tiles<true> : block_tiles<false>)(blk[g].a, sw * Cp * 2, toff.data(), RS, chunks,
                                                                     wb + panel * panel_size);
              if (have) store(job);
              block_sums(acc[cur]);
            } else {
              const int nseg = blk[g].nseg;  // the rows this block stores: up to its last segment's end
              const int m = nseg ? blk[g].seg[nseg - 1].i0 + blk[g].seg[nseg - 1].n : 0;
              (K - j0 <= 16 ? block_vectors<true> : block_vectors<false>)(blk[g].a, sw * Cp * 2, toff.data(), RS,
                                                                         chunks, wb + panel * panel_size, acc[cur], m);
              if (have) store(job);
            }
            job.acc = acc[cur];
            job.j0 = j0;
            job.ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
            job.nseg = blk[g].nseg;
            std::copy(blk[g].seg, blk[g].seg + blk[g].nseg, job.seg);
            have = true;
            cur ^= 1;
          }
        }
        nblk = 0;
      };
      auto pixel = [&](int64_t p, int64_t q) {
        return Segment{0, 0, n * os0 + r * (p * os2 + q * os3), rp ? rp + n * rs0 + r * (p * rs2 + q * rs3) : nullptr};
      };
      if (flat_pays) {  // stride 1: 32 consecutive positions v = (p − pa)·Wp + q of the band's grid
        const int64_t nv = (pz - pa) * Wp;
        for (int64_t v0 = 0; v0 < nv; v0 += 32) {
          Blk& bk = blk[nblk++];
          bk.a = buf + v0 * Cp;
          bk.nseg = 0;
          for (int i = 0; i < 32 && v0 + i < nv;) {
            const int64_t p = (v0 + i) / Wp, q = (v0 + i) % Wp;
            if (q >= Q) {
              i += static_cast<int>(Wp - q);
              continue;
            }
            const int cnt = static_cast<int>(std::min<int64_t>({Q - q, 32 - i, nv - v0 - i}));
            Segment s = pixel(pa + p, q);
            s.i0 = i;
            s.n = cnt;
            bk.seg[bk.nseg++] = s;
            i += cnt;
          }
          if (nblk == kRun) run();
        }
      } else {
        for (int64_t p = pa; p < pz; ++p)
          for (int64_t q0 = 0; q0 < Q; q0 += 32) {
            Blk& bk = blk[nblk++];
            bk.a = buf + ((p - pa) * sh * Wp + q0 * sw) * Cp;
            bk.nseg = 1;
            bk.seg[0] = pixel(p, q0);
            bk.seg[0].n = static_cast<int>(std::min<int64_t>(32, Q - q0));
            if (nblk == kRun || q0 + 32 >= Q) run();
          }
      }
      if (nblk) run();
    }
    if (have) store(job);
    end_thread();
  });
}

}  // namespace sft
