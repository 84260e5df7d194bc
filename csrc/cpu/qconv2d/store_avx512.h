// The AVX-512 store of the int8 conv's sums (fused requantization), shared by the VNNI tiles and the AMX block.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"
#include "cpu/qconv2d/tiles.h"

// Every store helper is forced inline: out of line (GCC's choice once the store grew), a VNNI tile passed its
// accumulators through memory to a PLT call per pixel pair, 18 % of a 32-channel 1×1 conv's time.
#define SFT_STORE_INLINE __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))

namespace sft::qconv {

// The store's constants in registers and locals: the uint8 stores may alias anything (char type), so fields read
// through the Store struct would be reloaded after every store.
struct Epi {
  int act;
  bool quant, s8, bf16, res_u8;
  __m512 slope, inv_out, zo_f, six;  // six: relu6's bound, in the prescaled units for a uint8 output
  __m512 out_scale;  // back to real units for silu and hardswish (not scale-invariant); 1 for float outputs
  __m512 rscale;
  __m512i rzp;
  const void* res;
  int64_t ldr, ldo;
  void* out;
  const int64_t* pix;  // Store::pix
};

// Where pixel i's outputs start, in elements from e.out.
inline int64_t pixel_offset(const Epi& e, int64_t i) { return e.pix ? e.pix[i] : i * e.ldo; }

SFT_STORE_INLINE inline Epi epi_of(const Store& s) {
  const Types& t = s.ty;
  return {s.act,
          t.quant,
          t.s8,
          t.bf16,
          t.res_u8,
          _mm512_set1_ps(s.slope),
          _mm512_set1_ps(t.inv_out),
          _mm512_set1_ps(float(t.zo)),
          _mm512_set1_ps(t.quant ? kRelu6Max * t.inv_out : kRelu6Max),
          _mm512_set1_ps(t.quant ? 1.f / t.inv_out : 1.f),
          _mm512_set1_ps(t.rscale),
          _mm512_set1_epi32(t.rzp),
          s.res,
          s.ldr,
          s.ldo,
          s.out,
          s.pix};
}

// The residual of 16 channels of pixel i: float32, or a uint8 one dequantized ((r − zero point)·scale, the same
// float32 arithmetic as dequantizing it first). With pix, the residual's pixels lie where the outputs' do.
SFT_STORE_INLINE inline __m512 residual16(const Epi& e, int64_t i, int c0, __mmask16 m) {
  const int64_t o = (e.pix ? e.pix[i] : i * e.ldr) + c0;
  if (e.res_u8) {
    const __m128i r = _mm_maskz_loadu_epi8(m, static_cast<const uint8_t*>(e.res) + o);
    __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(r), e.rzp)), e.rscale);
    asm("" : "+v"(d));  // rounded on its own (see rounded() in tiles.h)
    return d;
  }
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(e.res) + o);
}

// 16 float32 values as bfloat16 bits, rounded to nearest even, NaN quiet (bf16_bits; no AVX512_BF16 needed).
SFT_STORE_INLINE inline __m256i bf16x16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(r);
}

// The epilogue after the sums' scaling: v (already x·mult + bias, prescaled for a uint8 output) → activation →
// + residual (→ + the output zero point); 16 channels of pixel i. The int8 conv's store and the Winograd int8 conv's
// output transform (qwinograd.cpp) share it.
SFT_STORE_INLINE inline __m512 finish16(__m512 v, int64_t i, int c0, __mmask16 m, const Epi& e) {
  const __m512 zero = _mm512_setzero_ps();
  if (e.act == kActRelu) v = _mm512_max_ps(v, zero);
  if (e.act == kActLeaky) v = _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, e.slope);
  if (e.act == kActRelu6) v = _mm512_min_ps(_mm512_max_ps(v, zero), e.six);
  if (e.act >= kActSilu)  // in real units: unlike the relus, these do not commute with the 1/out_scale prescaling
    v = e.quant ? _mm512_mul_ps(act512_wide(_mm512_mul_ps(v, e.out_scale), e.act), e.inv_out)
                : act512_wide(v, e.act);
  if (e.quant) {
    if (e.res) v = _mm512_fmadd_ps(residual16(e, i, c0, m), e.inv_out, v);
    if (e.act || e.res) v = _mm512_add_ps(v, e.zo_f);
  } else if (e.res) {
    v = _mm512_add_ps(v, residual16(e, i, c0, m));
  }
  return v;
}

// y = (acc − zx·wsum)·mult + bias → activation → + residual → float32 (bfloat16), or uint8 (int8) requantized; 16
// channels of pixel i.
// For a uint8 output, mult and bias come pre-multiplied by 1/out_scale (q_mult, q_bias: positive scaling commutes
// with relu and leaky relu), and the output zero point joins q_bias when nothing follows it.
SFT_STORE_INLINE inline __m512 epilogue16(__m512i a, int64_t i, int c0, __mmask16 m, __m512i comp, __m512 mult,
                                          __m512 bias, const Epi& e) {
  return finish16(_mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, comp)), mult, bias), i, c0, m, e);
}

// The rounded integer of a requantized value v, clamped first at 512 (past uint8's range with any zero point): past
// int32's range the conversion gives INT_MIN, which would store 0 for a huge positive output (a tiny out_scale); NaN
// still gives 0.
__attribute__((target("avx512f"), always_inline)) inline __m512i rounded_q(__m512 v) {
  return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_set1_ps(512.f), v));
}

// The finished value v of 16 channels written in the output's type at element offset o from e.out.
SFT_STORE_INLINE inline void write16_at(__m512 v, int64_t o, __mmask16 m, const Epi& e) {
  if (e.quant) {
    const __m512i q = _mm512_max_epi32(rounded_q(v), _mm512_setzero_si512());
    __m128i b = _mm512_cvtusepi32_epi8(q);  // ≤ 255
    if (e.s8) b = _mm_xor_si128(b, _mm_set1_epi8(char(0x80)));
    if (m == 0xFFFF)  // a whole vector: a plain store (masked byte stores cost more on Zen 4)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(e.out) + o), b);
    else
      _mm_mask_storeu_epi8(static_cast<uint8_t*>(e.out) + o, m, b);
  } else if (e.bf16) {
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(e.out) + o, m, bf16x16(v));
  } else {
    _mm512_mask_storeu_ps(static_cast<float*>(e.out) + o, m, v);
  }
}

// The same for channels c0 … c0 + 15 of pixel i.
SFT_STORE_INLINE inline void write16(__m512 v, int64_t i, int c0, __mmask16 m, const Epi& e) {
  write16_at(v, pixel_offset(e, i) + c0, m, e);
}

SFT_STORE_INLINE inline void store16(__m512i a, int64_t i, int c0, __mmask16 m, __m512i comp, __m512 mult, __m512 bias,
                                     const Epi& e) {
  write16(epilogue16(a, i, c0, m, comp, mult, bias, e), i, c0, m, e);
}

// Two pixels' 32 uint8 outputs at once (int8: moved by 128) (pixels i, i + 1, all 32 channels; a0 / a1 their sums,
// channels 0-15 then 16-31): int32 → int16 → uint8 with saturating packs (both ends), one lane-fixing permute, two
// 32-byte stores, instead of four narrowing stores (vpmovusdb to memory is slow on Intel and AMD alike). The sums
// come by value: arrays of them made the VNNI tile keep its accumulators in memory (zeroed with rep stos per tile).
SFT_STORE_INLINE inline void store_pair_q8(__m512i a0lo, __m512i a0hi, __m512i a1lo, __m512i a1hi, int64_t i,
                                           const __m512i* comp, const __m512* mult, const __m512* bias, const Epi& e) {
  const __mmask16 all = 0xFFFF;
  const __m512i q0 = rounded_q(epilogue16(a0lo, i, 0, all, comp[0], mult[0], bias[0], e));
  const __m512i q1 = rounded_q(epilogue16(a0hi, i, 16, all, comp[1], mult[1], bias[1], e));
  const __m512i q2 = rounded_q(epilogue16(a1lo, i + 1, 0, all, comp[0], mult[0], bias[0], e));
  const __m512i q3 = rounded_q(epilogue16(a1hi, i + 1, 16, all, comp[1], mult[1], bias[1], e));
  __m512i w = _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
  if (e.s8) w = _mm512_xor_si512(w, _mm512_set1_epi8(char(0x80)));
  const __m512i fix = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i o = _mm512_permutexvar_epi32(fix, w);
  uint8_t* out = static_cast<uint8_t*>(e.out);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + pixel_offset(e, i)), _mm512_castsi512_si256(o));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + pixel_offset(e, i + 1)), _mm512_extracti64x4_epi64(o, 1));
}

// The same from a block of accumulators [pixel][32] in memory (the AMX block's).
SFT_STORE_INLINE inline void store_pair_q8(const int32_t* acc, int64_t i, const __m512i* comp, const __m512* mult,
                                           const __m512* bias, const Epi& e) {
  store_pair_q8(_mm512_loadu_si512(acc + i * kNR), _mm512_loadu_si512(acc + i * kNR + 16),
                _mm512_loadu_si512(acc + (i + 1) * kNR), _mm512_loadu_si512(acc + (i + 1) * kNR + 16), i, comp, mult,
                bias, e);
}

// The per-channel multiplier and bias of 16 channels as store16 wants them.
SFT_STORE_INLINE inline void channel_consts(const Store& s, const Epi& e, int64_t jj, __m512* mult, __m512* bias) {
  *mult = _mm512_loadu_ps(s.mult + jj);
  *bias = s.bias ? _mm512_loadu_ps(s.bias + jj) : _mm512_setzero_ps();
  if (e.quant) {
    *mult = _mm512_mul_ps(*mult, e.inv_out);
    *bias = _mm512_mul_ps(*bias, e.inv_out);
    if (!e.act && !e.res) *bias = _mm512_add_ps(*bias, e.zo_f);
  }
}

// A 32-channel panel's per-channel constants for store16 / store_pair_q8 (halves: 16-channel vectors in use).
struct PanelConsts {
  __m512i comp[2];
  __m512 mult[2], bias[2];
  int halves;
};

SFT_STORE_INLINE inline PanelConsts panel_consts(const Store& s, const Epi& e, int64_t j0, int ncols) {
  // Written out, not a loop over the halves: GCC made that loop's copies a `rep movsq` (two per tile, 7 % of a
  // 32-channel 1×1 conv's time).
  PanelConsts p;
  p.halves = ncols > 16 ? 2 : 1;
  p.comp[0] = _mm512_loadu_si512(s.comp + j0);
  channel_consts(s, e, j0, &p.mult[0], &p.bias[0]);
  if (p.halves > 1) {
    p.comp[1] = _mm512_loadu_si512(s.comp + j0 + 16);
    channel_consts(s, e, j0 + 16, &p.mult[1], &p.bias[1]);
  }
  return p;
}

__attribute__((target("avx512f"), always_inline)) inline __mmask16 tail_mask(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

}  // namespace sft::qconv
