// int8 Winograd-domain 3×3 conv, F(2×2, 3×3) (stride 1, padding 1): the multiplies run in int8 on the transformed
// tiles, 16 products per 2×2 outputs instead of 36 (LoWino, Li et al. 2021, quantizes in the Winograd domain the same
// way).
//
// Each 4×4 input tile d (uint8, padding = the zero point zx) becomes v = Bᵀ(d − zx)B, exact in int16 (|v| ≤ 1020);
// position p's v is requantized to int8 with a Q15 multiplier, q = sat8((v·mult[p] + 2¹⁴) >> 15) (vpmulhrsw, then a
// saturating narrow), calibrated per layer so that each position's range fits. q + 128 is a uint8 "pixel" of C
// channels, so each position is a 1×1 int8 conv over the tiles (the int8 conv's VNNI tile loop, with the transformed
// weights quantized per (position, output channel) and packed by qconv2d_pack), whose int32 sums go to a block buffer
// in L1 / L2. The output transform reads them as M = (acc − 128·Σu)·w_scale[p][k]·x_scale·2¹⁵/mult[p] (the zero
// point 128 taken back through the weights' sums) and AᵀMA gives the 2×2 outputs, which go through the int8 conv's
// epilogue (bias, activation, residual, requantization) to their places. Blocks: 14 tiles in raster order, all
// output panels.
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/qconv2d/store_avx512.h"
#include "cpu/qconv2d/tiles.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"

namespace sft {

using qconv::kMR;
using qconv::kNR;

namespace {

constexpr int kPos = 16;  // the 4×4 Winograd positions

// q of one transformed value (the AVX-512 path's vpmulhrsw and saturating narrow, written out).
inline int8_t requant_v(int v, int mult) {
  const int q = (v * mult + (1 << 14)) >> 15;  // arithmetic shift: floor
  return static_cast<int8_t>(std::min(127, std::max(-128, q)));
}

// Bᵀ d B of a 4×4 tile (rows r0 … r3 of 4 values each, in place), Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1].
template <class T, class Add, class Sub>
inline void transform_tile(T (&d)[4][4], Add add, Sub sub) {
  for (int c = 0; c < 4; ++c) {
    const T d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c];
    d[0][c] = sub(d0, d2);
    d[1][c] = add(d1, d2);
    d[2][c] = sub(d2, d1);
    d[3][c] = sub(d1, d3);
  }
  for (int r = 0; r < 4; ++r) {
    const T t0 = d[r][0], t1 = d[r][1], t2 = d[r][2], t3 = d[r][3];
    d[r][0] = sub(t0, t2);
    d[r][1] = add(t1, t2);
    d[r][2] = sub(t2, t1);
    d[r][3] = sub(t1, t3);
  }
}

// The transformed tiles of one block: mt tiles whose top-left input pixels are at x[i] (rows of pitch ldx[i]), written
// to v [16][kMR][Cp] as uint8 (q + 128). Bᵀ(d − zx)B = BᵀdB − 4·zx at position (1, 1) only
// (Bᵀ's rows sum to 0, 2, 0, 0), so the zero point is taken off once.
void input_block_scalar(const uint8_t* const* x, const int64_t* ldx, int mt, int64_t Cp, int zx, const int* mult,
                        uint8_t* v) {
  for (int i = 0; i < mt; ++i)
    for (int64_t c = 0; c < Cp; ++c) {
      int d[4][4];
      for (int r = 0; r < 4; ++r)
        for (int s = 0; s < 4; ++s) d[r][s] = x[i][r * ldx[i] + s * Cp + c];
      transform_tile(d, [](int a, int b) { return a + b; }, [](int a, int b) { return a - b; });
      d[1][1] -= 4 * zx;
      for (int p = 0; p < kPos; ++p)
        v[(p * kMR + i) * Cp + c] = static_cast<uint8_t>(requant_v(d[p / 4][p % 4], mult[p]) ^ 0x80);
    }
}

// The vector additions of the transforms (lambdas would not inherit the functions' target attributes).
#define SFT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
struct AddI16 {
  SFT_AVX512 __m512i operator()(__m512i a, __m512i b) const { return _mm512_add_epi16(a, b); }
};
struct SubI16 {
  SFT_AVX512 __m512i operator()(__m512i a, __m512i b) const { return _mm512_sub_epi16(a, b); }
};
struct AddF32 {
  SFT_AVX512 __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};
struct SubF32 {
  SFT_AVX512 __m512 operator()(__m512 a, __m512 b) const { return _mm512_sub_ps(a, b); }
};
#undef SFT_AVX512

// flatten: the functors' bodies (AVX-512 targets) inlined through the untargeted templates; as calls, each vector
// add cost a call and the conv ran 0.93× the direct one.
__attribute__((target("avx512f,avx512bw,avx512vl"), flatten)) void input_block_avx512(const uint8_t* const* x,
                                                                                      const int64_t* ldx, int mt,
                                                                                      int64_t Cp, int zx,
                                                                                      const int* mult, uint8_t* v) {
  __m512i m[kPos];
  for (int p = 0; p < kPos; ++p) m[p] = _mm512_set1_epi16(static_cast<int16_t>(mult[p]));
  const __m512i z4 = _mm512_set1_epi16(static_cast<int16_t>(4 * zx));
  const __m256i flip = _mm256_set1_epi8(char(0x80));
  const AddI16 add;
  const SubI16 sub;
  for (int i = 0; i < mt; ++i)
    for (int64_t c0 = 0; c0 < Cp; c0 += 32) {
      const int64_t nc = std::min<int64_t>(32, Cp - c0);
      const __mmask32 mask = nc == 32 ? ~__mmask32(0) : (__mmask32(1) << nc) - 1;
      __m512i d[4][4];
      for (int r = 0; r < 4; ++r)
        for (int s = 0; s < 4; ++s)
          d[r][s] = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, x[i] + r * ldx[i] + s * Cp + c0));
      transform_tile(d, add, sub);
      d[1][1] = _mm512_sub_epi16(d[1][1], z4);
      for (int p = 0; p < kPos; ++p) {
        const __m256i q = _mm256_xor_si256(_mm512_cvtsepi16_epi8(_mm512_mulhrs_epi16(d[p / 4][p % 4], m[p])), flip);
        _mm256_mask_storeu_epi8(v + (p * kMR + i) * Cp + c0, mask, q);
      }
    }
}

// One position's int32 sums for mr tiles × one 32-channel panel, stored at acc [mr][32] (pitch lda): the int8 conv's
// VNNI tile loop (rows[i]: tile i's kg·4 bytes; b: the panel's [kg][32][4] weights) with a store that decides
// nothing and needs no constants (with them, 28 accumulators left no registers and GCC kept them in memory).
template <int MR>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_sums_vnni(const uint8_t* const* rows,
                                                                                    int64_t kg, const int8_t* b,
                                                                                    int32_t* acc, int64_t lda) {
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
  for (int64_t g = 0; g < kg; ++g, b += kNR * 4) {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
    for (int i = 0; i < MR; ++i) {
      int32_t word;
      std::memcpy(&word, rows[i] + 4 * g, 4);
      const __m512i a = _mm512_set1_epi32(word);
      acc0[i] = _mm512_dpbusd_epi32(acc0[i], a, b0);
      acc1[i] = _mm512_dpbusd_epi32(acc1[i], a, b1);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_si512(acc + i * lda, acc0[i]);
    _mm512_storeu_si512(acc + i * lda + 16, acc1[i]);
  }
}

// The same on any CPU.
void tile_sums_scalar(const uint8_t* const* rows, int mr, int64_t kg, const int8_t* b, int32_t* acc, int64_t lda) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < kNR; ++j) {
      int32_t sum = 0;
      for (int64_t g = 0; g < kg; ++g)
        for (int t = 0; t < 4; ++t) sum += int32_t(rows[i][4 * g + t]) * b[(g * kNR + j) * 4 + t];
      acc[i * lda + j] = sum;
    }
}

using TileSums = void (*)(const uint8_t* const*, int64_t, const int8_t*, int32_t*, int64_t);

template <int... I>
constexpr std::array<TileSums, sizeof...(I)> tile_sums_table(std::integer_sequence<int, I...>) {
  return {tile_sums_vnni<I + 1>...};
}

// The 2×2 outputs AᵀMA of one tile's 16 values m[p] (Aᵀ = [1 1 1 0; 0 1 −1 −1]), in this order of additions.
template <class T, class Add, class Sub>
inline void output_tile(const T (&m)[kPos], T (&y)[4], Add add, Sub sub) {
  T r0[4], r1[4];
  for (int c = 0; c < 4; ++c) {
    r0[c] = add(add(m[c], m[4 + c]), m[8 + c]);
    r1[c] = sub(sub(m[4 + c], m[8 + c]), m[12 + c]);
  }
  y[0] = add(add(r0[0], r0[1]), r0[2]);
  y[1] = sub(sub(r0[1], r0[2]), r0[3]);
  y[2] = add(add(r1[0], r1[1]), r1[2]);
  y[3] = sub(sub(r1[1], r1[2]), r1[3]);
}

// Where a block's outputs go: tile i (image n[i], tile row tp[i], column tq[i]) has output (a, b) at pixel
// px = (n·P + 2·tp + a)·Q + 2·tq + b, if inside the image; its channel k at element px·K + k, or with a fused
// PixelShuffle(r) (channels in sub-pixel order, Cs = K / r² per sub-pixel) at its shuffled place. place() sets, per
// tile and output (a, b) = j / 2, j % 2, the pixel (−1: outside) and the element of its channel 0, once per block:
// computed per output and channel vector, the index arithmetic and its tests took ~40 % of the output transform.
struct OutBlock {
  int64_t n[kMR], tp[kMR], tq[kMR], P, Q, K, r, Cs;
  int64_t px[kMR][4], base[kMR][4];
  void place(int mt) {
    for (int i = 0; i < mt; ++i)
      for (int j = 0; j < 4; ++j) {
        const int64_t p = 2 * tp[i] + j / 2, q = 2 * tq[i] + j % 2;
        const bool in = p < P && q < Q;
        px[i][j] = in ? (n[i] * P + p) * Q + q : -1;
        base[i][j] = !in ? 0 : r == 1 ? px[i][j] * K : ((n[i] * P * r + p * r) * Q * r + q * r) * Cs;
      }
  }
  // Channel k's offset from an output's channel 0 (its sub-pixel row and column and its channel there).
  int64_t chan(int64_t k) const { return r == 1 ? k : (k / Cs / r * Q * r + k / Cs % r) * Cs + k % Cs; }
};

// A block's sums of one panel: acc [kMR][16][32] int32, and per position p the panel's compensations comp[p·ldc + j]
// and multipliers mult[p·ldc + j]: M = (acc − comp)·mult.
struct Sums {
  const int32_t* acc;
  const int32_t* comp;
  const float* mult;
  int64_t ldc;
};

// The outputs of one panel (channels j0 … j0 + ncols) from its sums: the epilogue of the portable store
// (store_sums), bias added before the activation.
void output_block_scalar(const Sums& sm, int mt, int64_t j0, int ncols, const OutBlock& ob, const qconv::Store& s) {
  for (int i = 0; i < mt; ++i)
    for (int j = 0; j < ncols; ++j) {
      float m[kPos], y[4];
      for (int p = 0; p < kPos; ++p)
        m[p] = static_cast<float>(sm.acc[(i * kPos + p) * kNR + j] - sm.comp[p * sm.ldc + j]) *
               sm.mult[p * sm.ldc + j];
      output_tile(m, y, [](float a, float b) { return a + b; }, [](float a, float b) { return a - b; });
      for (int o = 0; o < 4; ++o) {
        const int64_t px = ob.px[i][o], k = j0 + j;
        if (px < 0) continue;
        float val = activate(y[o] + (s.bias ? s.bias[k] : 0.f), s.act, s.slope);
        if (s.res) val += qconv::residual_at(s, px * s.ldr + k);
        qconv::write_value(s, ob.base[i][o] + ob.chan(k), val);
      }
    }
}

// The same with AVX-512: 16 channels a vector, through the int8 conv's epilogue (finish16 / write16); for a uint8
// output the value is scaled as that store scales its sums, y·(1/out_scale) + bias·(1/out_scale).
__attribute__((target("avx512f,avx512bw,avx512vl"), flatten)) void output_block_avx512(const Sums& sm, int mt,
                                                                                       int64_t j0, int ncols,
                                                                                       const OutBlock& ob,
                                                                                       const qconv::Store& s,
                                                                                       const float* ones) {
  qconv::Store unit = s;
  unit.mult = ones;  // channel_consts' multiplier: 1 (· 1/out_scale)
  const qconv::Epi e = qconv::epi_of(unit);
  const AddF32 add;
  const SubF32 sub;
  for (int h = 0; 16 * h < ncols; ++h) {
    const __mmask16 msk = qconv::tail_mask(ncols - 16 * h);
    const int c0 = static_cast<int>(j0) + 16 * h;
    __m512 scale, bias;
    qconv::channel_consts(unit, e, c0, &scale, &bias);
    const int64_t coff = ob.chan(c0);
    for (int i = 0; i < mt; ++i) {
      __m512 m[kPos], y[4];
      for (int p = 0; p < kPos; ++p) {
        const __m512i a = _mm512_loadu_si512(sm.acc + (i * kPos + p) * kNR + 16 * h);
        const __m512i c = _mm512_loadu_si512(sm.comp + p * sm.ldc + 16 * h);
        m[p] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, c)),
                             _mm512_loadu_ps(sm.mult + p * sm.ldc + 16 * h));
      }
      output_tile(m, y, add, sub);
#pragma GCC unroll 4
      for (int o = 0; o < 4; ++o) {
        const int64_t px = ob.px[i][o];
        if (px < 0) continue;
        const __m512 v = qconv::finish16(_mm512_fmadd_ps(y[o], scale, bias), px, c0, msk, e);
        qconv::write16_at(v, ob.base[i][o] + coff, msk, e);
      }
    }
  }
}

}  // namespace

at::Tensor qconv2d_winograd_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& packed,
                                const at::Tensor& wsum, const at::Tensor& w_scale, const at::Tensor& mult,
                                const c10::optional<at::Tensor>& bias, int64_t activation, double negative_slope,
                                const c10::optional<at::Tensor>& residual, double out_scale, int64_t out_zero_point,
                                int64_t pixel_shuffle, double res_scale, int64_t res_zero_point) {
  const char* op = "sft_cpu::qconv2d_winograd";
  TORCH_CHECK(x.dim() == 4 && (x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat), op,
              ": x must be a 4-d uint8 or float32 tensor");
  TORCH_CHECK(w_scale.dim() == 2 && w_scale.size(0) == kPos && w_scale.scalar_type() == at::kFloat, op,
              ": w_scale must be float32 [16, K]");
  TORCH_CHECK(mult.dim() == 1 && mult.numel() == kPos && mult.scalar_type() == at::kInt, op,
              ": mult must be int32 [16]");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = w_scale.size(1);
  TORCH_CHECK(C >= 16, op, ": needs at least 16 input channels, got ", C);
  const int64_t align = qconv2d_channel_align(C), Cp = (C + align - 1) / align * align, kg = Cp / 4;
  const int64_t panels = (K + kNR - 1) / kNR, Kp = panels * kNR;
  const int64_t pos_numel = qconv2d_packed_numel(K, C, 1, 1), panel_size = pos_numel / std::max<int64_t>(panels, 1);
  TORCH_CHECK(packed.scalar_type() == at::kChar && packed.numel() == kPos * pos_numel && wsum.numel() == kPos * Kp &&
                  wsum.scalar_type() == at::kInt && packed.is_contiguous() && wsum.is_contiguous(),
              op, ": packed weights do not match K=", K, ", C=", C, " (16 qconv2d_pack results of [K, C, 1, 1])");
  std::vector<int> mv(kPos);
  const at::Tensor mc = mult.contiguous();
  for (int p = 0; p < kPos; ++p) {
    mv[p] = mc.data_ptr<int32_t>()[p];
    TORCH_CHECK(mv[p] >= 1 && mv[p] <= 32767, op, ": mult must be in [1, 32767], got ", mv[p]);
  }
  const int64_t r = pixel_shuffle;
  TORCH_CHECK(r >= 1 && K % (r * r) == 0, op, ": pixel_shuffle must be >= 1 and divide K into r² groups");
  const qconv::Types ty = qconv::store_types(out_scale, out_zero_point, c10::nullopt, res_scale, res_zero_point, op);
  const int64_t P = H, Q = W, tP = (P + 1) / 2, tQ = (Q + 1) / 2, Cs = K / (r * r);
  const std::string kern = qconv2d_kernel();
  const bool v512 = kern == "vnni" || kern == "amx";
  // PixelShuffle(r) in the store where each 16-channel vector lies in one sub-pixel and no residual is added (the
  // residual is shaped like the conv's own output), else after the conv.
  const bool fused_shuffle = r > 1 && !residual.has_value() && (!v512 || Cs % 16 == 0);
  const auto [out, res] = fused_shuffle ? qconv::ConvOutput{pooled_empty({N, Cs, P * r, Q * r},
                                                                         x.options().dtype(qconv::out_scalar_type(ty)),
                                                                         at::MemoryFormat::ChannelsLast),
                                                            at::Tensor()}
                                        : qconv::conv_output(x, N, K, P, Q, ty, residual, op);
  auto finished = [&](const at::Tensor& y) { return r > 1 && !fused_shuffle ? shuffle_sub_pixels(y, r) : y; };
  if (N == 0 || K == 0 || P == 0 || Q == 0) return finished(out);

  // A uint8 channels_last input with whole 4-byte channel groups is read in place: the tiles inside the image
  // straight from it, the edge tiles from a 4×4 patch padded with the zero point (per thread). Otherwise (a float
  // input quantized on the way, channel padding) the zero-point-padded NHWC copy, one row and column more where P
  // or Q is odd (the last tiles' fourth row and column: they feed only outputs that are cut).
  const bool in_place = x.scalar_type() == at::kByte && Cp == C && x.stride(1) == 1 && x.stride(3) == C &&
                        x.stride(2) == W * C && (N == 1 || x.stride(0) == H * W * C);
  const int zx = static_cast<int>(x_zero_point);
  const int64_t Ht = 2 * tP + 2, Wt = 2 * tQ + 2, ldx = in_place ? W * C : Wt * Cp;
  at::Tensor xp;
  const uint8_t* xb = nullptr;
  if (in_place) {
    xb = x.data_ptr<uint8_t>();
  } else {
    const qconv::InputRows rows(x, x_scale, x_zero_point, 1, 1, Cp, {nullptr, nullptr});
    xp = pooled_empty({N * Ht * ldx}, x.options().dtype(at::kByte));
    uint8_t* xw = xp.data_ptr<uint8_t>();
    at::parallel_for(0, N * Ht, 4, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        uint8_t* dst = xw + t * ldx;
        const int64_t row = t % Ht;
        if (row < rows.Hp) {
          rows.fill(t / Ht, row, dst);
          std::memset(dst + rows.Wp * Cp, zx, (Wt - rows.Wp) * Cp);
        } else {
          std::memset(dst, zx, ldx);
        }
      }
    });
    xb = xw;
  }

  // Per (position, channel) constants: the zero point 128's compensation and the multiplier of the sums,
  // w_scale[p][k]·(x_scale·2¹⁵/mult[p]) (the int8 conv's channel constants with that input scale); the bias.
  std::vector<int32_t> comp(kPos * Kp);
  std::vector<float> mul(kPos * Kp), ones(Kp, 1.f), bpad;
  for (int p = 0; p < kPos; ++p) {
    for (int64_t k = 0; k < Kp; ++k) comp[p * Kp + k] = 128 * wsum.data_ptr<int32_t>()[p * Kp + k];
    const auto cc = qconv::channel_constants(w_scale[p], x_scale * 32768.0 / mv[p], p == 0 ? bias : c10::nullopt, K,
                                             Kp, op);
    std::copy(cc.mult.begin(), cc.mult.end(), mul.begin() + p * Kp);
    if (p == 0) bpad = cc.bias;
  }
  const qconv::Store out_store{nullptr, nullptr, bpad.empty() ? nullptr : bpad.data(), static_cast<int>(activation),
                               static_cast<float>(negative_slope), res.defined() ? res.data_ptr() : nullptr, K,
                               out.data_ptr(), K, ty};
  static constexpr auto tile_sums = tile_sums_table(std::make_integer_sequence<int, kMR>{});
  const int8_t* pb = packed.data_ptr<int8_t>();
  const char* rb = res.defined() ? static_cast<const char*>(res.data_ptr()) : nullptr;
  const int64_t res_size = ty.res_size();
  // Blocks of kMR tiles in raster order over all images' tiles (a block may span tile rows): only the last is short.
  const int64_t tiles = N * tP * tQ, items = (tiles + kMR - 1) / kMR;
  at::parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    std::vector<uint8_t> vbuf(kPos * kMR * Cp), patch(in_place ? kMR * 16 * Cp : 0);
    std::vector<int32_t> abuf(kMR * kPos * kNR);
    int64_t ldt[kMR];
    for (int64_t it = b; it < e; ++it) {
      const int mt = static_cast<int>(std::min<int64_t>(kMR, tiles - it * kMR));
      OutBlock ob;  // no {}: zeroing its arrays per block was a rep stos
      ob.P = P;
      ob.Q = Q;
      ob.K = K;
      ob.r = fused_shuffle ? r : 1;
      ob.Cs = Cs;
      const uint8_t* xt[kMR];
      for (int i = 0; i < mt; ++i) {
        const int64_t t = it * kMR + i;
        ob.n[i] = t / (tP * tQ);
        ob.tp[i] = t / tQ % tP;
        ob.tq[i] = t % tQ;
        ldt[i] = ldx;
        if (!in_place) {
          xt[i] = xb + (ob.n[i] * Ht + 2 * ob.tp[i]) * ldx + 2 * ob.tq[i] * Cp;
          continue;
        }
        const int64_t r0 = 2 * ob.tp[i] - 1, c0 = 2 * ob.tq[i] - 1;  // the tile's first input row and column
        if (r0 >= 0 && c0 >= 0 && r0 + 3 < H && c0 + 3 < W) {
          xt[i] = xb + ((ob.n[i] * H + r0) * W + c0) * C;
          continue;
        }
        uint8_t* pt = patch.data() + i * 16 * Cp;
        std::memset(pt, zx, 16 * Cp);
        for (int64_t r = std::max<int64_t>(r0, 0); r < std::min(r0 + 4, H); ++r) {
          const int64_t ca = std::max<int64_t>(c0, 0), cz = std::min(c0 + 4, W);
          if (ca < cz)
            std::memcpy(pt + ((r - r0) * 4 + (ca - c0)) * Cp, xb + ((ob.n[i] * H + r) * W + ca) * C, (cz - ca) * C);
        }
        xt[i] = pt;
        ldt[i] = 4 * Cp;
      }
      ob.place(mt);
      if (v512)
        input_block_avx512(xt, ldt, mt, Cp, zx, mv.data(), vbuf.data());
      else
        input_block_scalar(xt, ldt, mt, Cp, zx, mv.data(), vbuf.data());
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * kNR;
        const int ncols = static_cast<int>(std::min<int64_t>(kNR, K - j0));
        if (rb)  // the residual this panel's outputs add, fetched while its sums are made (read when needed, its
                 // scattered 2×2 pixels missed the cache: a float32 residual made the trunk conv 0.95× direct)
          for (int i = 0; i < mt; ++i)
            for (int o = 0; o < 4; ++o)
              if (ob.px[i][o] >= 0)
                for (int64_t byte = 0; byte < ncols * res_size; byte += 64)
                  __builtin_prefetch(rb + (ob.px[i][o] * K + j0) * res_size + byte, 0, 3);
        for (int p = 0; p < kPos; ++p) {
          const uint8_t* rp[kMR];
          for (int i = 0; i < mt; ++i) rp[i] = vbuf.data() + (p * kMR + i) * Cp;
          const int8_t* wp = pb + p * pos_numel + panel * panel_size;
          int32_t* ap = abuf.data() + p * kNR;
          if (v512)
            tile_sums[mt - 1](rp, kg, wp, ap, kPos * kNR);
          else
            tile_sums_scalar(rp, mt, kg, wp, ap, kPos * kNR);
        }
        const Sums sums{abuf.data(), comp.data() + j0, mul.data() + j0, Kp};
        if (v512)
          output_block_avx512(sums, mt, j0, ncols, ob, out_store, ones.data());
        else
          output_block_scalar(sums, mt, j0, ncols, ob, out_store);
      }
    }
  });
  return finished(out);
}

}  // namespace sft
