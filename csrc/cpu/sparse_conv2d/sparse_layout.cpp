// The sparse conv's input layout (tiles.h) filled from x, and its tiles' accumulators stored to the output with
// the epilogue.
#include "cpu/sparse_conv2d/sparse_layout.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"

namespace sft {
namespace sparse {
namespace {

inline float modulate(float v, const Source& s, int64_t i) {
  return s.scale ? v * (s.scale[i] + 1.f) + s.shift[i] : v;
}

// r[i][j] -> r[j][i] for a 16×16 block in registers.
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512* r) {
  __m512 a[16], b[16], c[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]),
                  a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      c[8 * i + j] = _mm512_shuffle_f32x4(b[8 * i + j], b[8 * i + j + 4], 0x88);
      c[8 * i + j + 4] = _mm512_shuffle_f32x4(b[8 * i + j], b[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(c[j], c[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(c[j], c[j + 8], 0xdd);
  }
}

inline __mmask16 first(int64_t n) { return static_cast<__mmask16>((1u << std::min<int64_t>(16, n)) - 1u); }

// Channels-last row h (unit channel stride) as S tap-shifted copies of its padded row (stride 1): 16 columns × 16
// channels at a time, transposed in registers; padded column j goes to column j − s·dw of copy s (so no padded row
// is written and copied again), and the padding columns are zeroed as the rows are written. S = 1, dw = 0 is the
// padded row itself.
__attribute__((target("avx512f"))) void fill_taps_cl_avx512(const Source& s, int64_t h, float* d, int64_t C,
                                                            int64_t pw, int64_t wq, int64_t S, int64_t dw) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.f);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t c = 0; c < C; ++c) {  // the columns of copy t that fall in the padding
      float* dc = d + (t * C + c) * wq;
      for (int64_t q = 0; q < pw - t * dw; q += 16) _mm512_mask_storeu_ps(dc + q, first(pw - t * dw - q), zero);
      for (int64_t q = std::max<int64_t>(0, pw + s.W - t * dw); q < wq; q += 16)
        _mm512_mask_storeu_ps(dc + q, first(wq - q), zero);
    }
  for (int64_t w0 = 0; w0 < s.W; w0 += 16) {
    const int64_t nw = std::min<int64_t>(16, s.W - w0);
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 mc = first(C - c0);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        if (i >= nw) {
          r[i] = zero;
          continue;
        }
        const int64_t o = h * s.xs2 + (w0 + i) * s.xs3 + c0;
        r[i] = _mm512_maskz_loadu_ps(mc, s.x + o);
        if (s.scale)
          r[i] = _mm512_fmadd_ps(r[i], _mm512_add_ps(_mm512_maskz_loadu_ps(mc, s.scale + o), one),
                                 _mm512_maskz_loadu_ps(mc, s.shift + o));
      }
      transpose16(r);
      for (int64_t t = 0; t < S; ++t) {
        const int64_t q0 = pw + w0 - t * dw, lo = std::max<int64_t>(0, -q0), hi = std::min(nw, wq - q0);
        if (hi <= lo) continue;
        const __mmask16 m = static_cast<__mmask16>(first(hi) & ~first(lo));
        for (int64_t j = 0; j < std::min<int64_t>(16, C - c0); ++j)
          _mm512_mask_storeu_ps(d + (t * C + c0 + j) * wq + q0, m, r[j]);
      }
    }
  }
}

}  // namespace

void fill_padded(const Source& s, const Padded& L, int64_t h, float* d, bool avx512) {
  if (s.xs1 == 1 && s.xs3 != 1 && avx512) return fill_taps_cl_avx512(s, h, d, L.C, L.pw, L.wp, 1, 0);
  for (int64_t c = 0; c < L.C; ++c) {
    float* dc = d + c * L.wp;
    std::memset(dc, 0, L.pw * sizeof(float));
    std::memset(dc + L.pw + s.W, 0, (L.wp - L.pw - s.W) * sizeof(float));
    const int64_t o = c * s.xs1 + h * s.xs2;
    if (s.xs3 == 1 && !s.scale) {
      std::memcpy(dc + L.pw, s.x + o, s.W * sizeof(float));
    } else {
      for (int64_t w = 0; w < s.W; ++w) dc[L.pw + w] = modulate(s.x[o + w * s.xs3], s, o + w * s.xs3);
    }
  }
}

bool fill_taps_direct(const Source& s, int64_t h, float* d, int64_t C, int64_t pw, int64_t wq, int64_t S,
                      int64_t sw, int64_t dw, bool avx512) {
  if (!(avx512 && sw == 1 && s.xs1 == 1 && s.xs3 != 1)) return false;
  fill_taps_cl_avx512(s, h, d, C, pw, wq, S, dw);
  return true;
}

void expand_taps(const float* t, const Padded& T, int64_t S, int64_t sw, int64_t dw, int64_t wq, float* d) {
  for (int64_t s = 0; s < S; ++s)
    for (int64_t c = 0; c < T.C; ++c) {
      const float* src = t + c * T.wp + s * dw;
      float* dst = d + (s * T.C + c) * wq;
      if (sw == 1) {
        std::memcpy(dst, src, wq * sizeof(float));
      } else {
        for (int64_t q = 0; q < wq; ++q) dst[q] = src[q * sw];
      }
    }
}

namespace {

inline float epilogue(float v, const Store& st, int64_t k) {
  if (st.bias) v += st.bias[k];
  v = activate(v, st.act, st.slope);
  return v;
}

__attribute__((target("avx512f"), always_inline)) inline __m512 act512(__m512 v, const Store& st) {
  const __m512 zero = _mm512_setzero_ps();
  if (st.act == kActRelu) return _mm512_max_ps(zero, v);  // vmaxps returns its second operand for a NaN
  if (st.act == kActLeaky)
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, _mm512_set1_ps(st.slope));
  if (st.act == kActRelu6) return _mm512_min_ps(_mm512_set1_ps(kRelu6Max), _mm512_max_ps(zero, v));
  if (st.act >= kActSilu) return act512_wide(v, st.act);
  return v;
}

// Channels-last output (unit channel stride): 16 channels × 16 pixels at a time, bias and activation applied per
// channel row, then transposed in registers so each pixel's channels go out as one store.
__attribute__((target("avx512f"))) void store_cl_avx512(const Store& st, const float* acc, int tw, int64_t o,
                                                        int64_t ro, int cnt) {
  for (int j0 = 0; j0 < cnt; j0 += 16) {
    const int nj = std::min(16, cnt - j0);
    for (int64_t k0 = 0; k0 < st.K; k0 += 16) {
      const int64_t nk = std::min<int64_t>(16, st.K - k0);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        if (i >= nk) {
          r[i] = _mm512_setzero_ps();
          continue;
        }
        __m512 v = _mm512_loadu_ps(acc + (k0 + i) * tw + j0);
        if (st.bias) v = _mm512_add_ps(v, _mm512_set1_ps(st.bias[k0 + i]));
        r[i] = act512(v, st);
      }
      transpose16(r);
      const __mmask16 mk = first(nk);
      for (int j = 0; j < nj; ++j) {
        __m512 v = r[j];
        if (st.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, st.res + ro + (j0 + j) * st.rs3 + k0));
        _mm512_mask_storeu_ps(st.out + o + (j0 + j) * st.os3 + k0, mk, v);
      }
    }
  }
}

// NCHW-like output (unit pixel stride): each channel's pixels are one contiguous run.
__attribute__((target("avx512f"))) void store_rows_avx512(const Store& st, const float* acc, int tw, int64_t o,
                                                          int64_t ro, int cnt) {
  for (int64_t k = 0; k < st.K; ++k) {
    const __m512 b = _mm512_set1_ps(st.bias ? st.bias[k] : 0.f);
    for (int j = 0; j < cnt; j += 16) {
      const __mmask16 m = first(cnt - j);
      __m512 v = act512(_mm512_add_ps(_mm512_loadu_ps(acc + k * tw + j), b), st);
      if (st.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, st.res + ro + k * st.rs1 + j));
      _mm512_mask_storeu_ps(st.out + o + k * st.os1 + j, m, v);
    }
  }
}

}  // namespace

void store_tile(const Store& st, const float* acc, int tw, int64_t n, int64_t p, int64_t q0, int cnt, bool avx512) {
  const int64_t o = n * st.os0 + p * st.os2 + q0 * st.os3;
  const int64_t ro = st.res ? n * st.rs0 + p * st.rs2 + q0 * st.rs3 : 0;
  if (avx512 && st.os1 == 1 && (!st.res || st.rs1 == 1)) return store_cl_avx512(st, acc, tw, o, ro, cnt);
  if (avx512 && st.os3 == 1 && (!st.res || st.rs3 == 1)) return store_rows_avx512(st, acc, tw, o, ro, cnt);
  for (int64_t k = 0; k < st.K; ++k) {
    const float* a = acc + k * tw;
    float* out = st.out + o + k * st.os1;
    const float* res = st.res ? st.res + ro + k * st.rs1 : nullptr;
    for (int j = 0; j < cnt; ++j) out[j * st.os3] = epilogue(a[j], st, k) + (res ? res[j * st.rs3] : 0.f);
  }
}

}  // namespace sparse
}  // namespace sft
