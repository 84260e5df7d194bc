// The sparse conv's input layout (tiles.h) filled from x, and its tiles' accumulators stored to the output with
// the epilogue.
#include "cpu/sparse_conv2d/sparse_layout.h"

#include <immintrin.h>

#include <unistd.h>

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

// Channels-last row h (unit channel stride) as its padded row: 16 columns × 16 channels at a time, transposed in
// registers, the padding columns zeroed.
__attribute__((target("avx512f"))) void fill_padded_cl_avx512(const Source& s, const Padded& L, int64_t h, float* d) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.f);
  for (int64_t c = 0; c < L.C && L.edges; ++c) {
    float* dc = d + c * L.wp;
    for (int64_t q = 0; q < L.pw; q += 16) _mm512_mask_storeu_ps(dc + q, first(L.pw - q), zero);
    for (int64_t q = L.pw + s.W; q < L.wp; q += 16) _mm512_mask_storeu_ps(dc + q, first(L.wp - q), zero);
  }
  const bool aligned = ((reinterpret_cast<uintptr_t>(d) | uintptr_t(L.wp * 4) | uintptr_t(L.pw * 4)) & 63) == 0;
  for (int64_t w0 = 0; w0 < s.W; w0 += 16) {
    const int64_t nw = std::min<int64_t>(16, s.W - w0);
    const __mmask16 m = first(nw);
    for (int64_t c0 = 0; c0 < L.C; c0 += 16) {
      const __mmask16 mc = first(L.C - c0);
      // Unrolled and branch-free (pixels past the row load with an empty mask), so r stays in registers.
      __m512 r[16];
      const int64_t o0 = h * s.xs2 + w0 * s.xs3 + c0;
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const __mmask16 mi = i < nw ? mc : 0;
        const int64_t o = o0 + (i < nw ? i : 0) * s.xs3;
        r[i] = _mm512_maskz_loadu_ps(mi, s.x + o);
        if (s.scale)
          r[i] = _mm512_fmadd_ps(r[i], _mm512_add_ps(_mm512_maskz_loadu_ps(mi, s.scale + o), one),
                                 _mm512_maskz_loadu_ps(mi, s.shift + o));
      }
      transpose16(r);
      float* dst = d + c0 * L.wp + L.pw + w0;
      if (nw == 16 && mc == 0xffff && aligned) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) _mm512_store_ps(dst + j * L.wp, r[j]);
      } else if (nw == 16 && mc == 0xffff) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dst + j * L.wp, r[j]);
      } else {
        for (int64_t j = 0; j < std::min<int64_t>(16, L.C - c0); ++j) _mm512_mask_storeu_ps(dst + j * L.wp, m, r[j]);
      }
    }
  }
}

// r[i][j] -> r[j][i] for an 8×8 block in registers.
__attribute__((target("avx2,fma"), always_inline)) inline void transpose8(__m256* r) {
  __m256 a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    b[4 * i] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
    b[4 * i + 1] = _mm256_shuffle_ps(a[4 * i], a[4 * i + 2], 0xee);
    b[4 * i + 2] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
    b[4 * i + 3] = _mm256_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(b[j], b[j + 4], 0x20);
    r[j + 4] = _mm256_permute2f128_ps(b[j], b[j + 4], 0x31);
  }
}

// The AVX2 form of fill_padded_cl_avx512: full 8 columns × 8 channels blocks transposed in registers, the ragged
// edges scalar.
__attribute__((target("avx2,fma"))) void fill_padded_cl_avx2(const Source& s, const Padded& L, int64_t h, float* d) {
  for (int64_t c = 0; c < L.C && L.edges; ++c) {
    float* dc = d + c * L.wp;
    std::memset(dc, 0, L.pw * sizeof(float));
    std::memset(dc + L.pw + s.W, 0, (L.wp - L.pw - s.W) * sizeof(float));
  }
  const __m256 one = _mm256_set1_ps(1.f);
  const int64_t W8 = s.W / 8 * 8, C8 = L.C / 8 * 8;
  for (int64_t w0 = 0; w0 < W8; w0 += 8)
    for (int64_t c0 = 0; c0 < C8; c0 += 8) {
      __m256 r[8];
      const int64_t o0 = h * s.xs2 + w0 * s.xs3 + c0;
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        r[i] = _mm256_loadu_ps(s.x + o0 + i * s.xs3);
        if (s.scale)
          r[i] = _mm256_fmadd_ps(r[i], _mm256_add_ps(_mm256_loadu_ps(s.scale + o0 + i * s.xs3), one),
                                 _mm256_loadu_ps(s.shift + o0 + i * s.xs3));
      }
      transpose8(r);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(d + (c0 + j) * L.wp + L.pw + w0, r[j]);
    }
  for (int64_t w = 0; w < s.W; ++w)
    for (int64_t c = (w < W8 ? C8 : 0); c < L.C; ++c) {
      const int64_t o = h * s.xs2 + w * s.xs3 + c;
      d[c * L.wp + L.pw + w] = modulate(s.x[o], s, o);
    }
}

}  // namespace

void fill_padded(const Source& s, const Padded& L, int64_t h, float* d, Isa isa) {
  if (s.xs1 == 1 && s.xs3 != 1 && isa == kAvx512) return fill_padded_cl_avx512(s, L, h, d);
  if (s.xs1 == 1 && s.xs3 != 1 && isa == kAvx2) return fill_padded_cl_avx2(s, L, h, d);
  for (int64_t c = 0; c < L.C; ++c) {
    float* dc = d + c * L.wp;
    if (L.edges) {
      std::memset(dc, 0, L.pw * sizeof(float));
      std::memset(dc + L.pw + s.W, 0, (L.wp - L.pw - s.W) * sizeof(float));
    }
    const int64_t o = c * s.xs1 + h * s.xs2;
    if (s.xs3 == 1 && !s.scale) {
      std::memcpy(dc + L.pw, s.x + o, s.W * sizeof(float));
    } else {
      for (int64_t w = 0; w < s.W; ++w) dc[L.pw + w] = modulate(s.x[o + w * s.xs3], s, o + w * s.xs3);
    }
  }
}

void fill_flat(const Source& s, const Padded& T, int64_t j0, int64_t cnt, int64_t width, int64_t Q, int64_t sh,
               int64_t sw, float* d, Isa isa) {
  for (int64_t c = 0; c < T.C && cnt < width; ++c) std::memset(d + c * T.wp + cnt, 0, (width - cnt) * sizeof(float));
  Padded run = T;
  run.edges = false;
  // Joined rows of the input itself (stride 1, Q = W, rows one pixel stride apart) are one run; else one per row.
  const bool joined = sh == 1 && sw == 1 && Q == s.W && s.xs2 == s.W * s.xs3;
  for (int64_t j = j0; j < j0 + cnt;) {
    const int64_t p = j / Q, q = j % Q, n = joined ? j0 + cnt - j : std::min(Q - q, j0 + cnt - j);
    const int64_t o = p * sh * s.xs2 + q * sw * s.xs3;
    const Source part{s.x + o, s.scale ? s.scale + o : nullptr, s.shift ? s.shift + o : nullptr, 1, n, s.xs1, 0,
                      s.xs3 * sw};
    run.pw = j - j0;
    fill_padded(part, run, 0, d, isa);
    j += n;
  }
}

void prefetch_rows(const Source& s, int64_t C, int64_t h0, int64_t h1, int64_t part, int64_t parts) {
  const auto lines = [](const float* p, int64_t n) {
    const char* c = reinterpret_cast<const char*>(p);
    for (int64_t o = 0; o < n * int64_t(sizeof(float)); o += 64) __builtin_prefetch(c + o, 0, 2);
  };
  if (s.xs1 == 1 && s.xs3 == C && s.xs2 == s.W * C) {  // channels-last rows: one run
    const int64_t n = (h1 - h0) * s.xs2;
    const int64_t a = n * part / parts / 16 * 16, e = n * (part + 1) / parts;
    lines(s.x + h0 * s.xs2 + a, e - a);
  } else if (s.xs3 == 1) {  // a run per channel and row
    for (int64_t c = C * part / parts; c < C * (part + 1) / parts; ++c)
      for (int64_t h = h0; h < h1; ++h) lines(s.x + c * s.xs1 + h * s.xs2, s.W);
  }
}

namespace {

__attribute__((target("avx512f"))) void copy_taps_avx512(const float* const* rows, int64_t U, int64_t wp,
                                                         int64_t c0, int64_t c1, int64_t S, int64_t j0, int64_t dw,
                                                         int vw, float* d) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t u = 0; u < U; ++u) {
      const float* src = rows[u] + c * wp + j0;
      for (int64_t s = 0; s < S; ++s, d += vw)
        for (int j = 0; j < vw; j += 16) _mm512_store_ps(d + j, _mm512_loadu_ps(src + s * dw + j));
    }
}

// vw = 16, 2 <= S <= 3 and every tap within 3 aligned vectors of the row: each (channel, row) read as whole aligned
// vectors (no loads split across lines) and each tap's vector cut from two of them by one permute (1-3 % of the
// trunk conv at 90 % sparsity, 5-7 % of its fixed cost, against unaligned loads; Zen 4).
__attribute__((target("avx512f"))) void copy_taps_aligned_avx512(const float* const* rows, int64_t U, int64_t wp,
                                                                 int64_t c0, int64_t c1, int64_t S, int64_t j0,
                                                                 int64_t dw, float* d) {
  const int64_t a0 = j0 / 16 * 16;
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512i idx[3];
  bool hi[3];  // the tap's vector lies in vectors 1-2 (else 0-1)
  for (int64_t s = 0; s < 3; ++s) {
    const int64_t sh = j0 + std::min<int64_t>(s, S - 1) * dw - a0;
    hi[s] = sh >= 16;
    idx[s] = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int>(sh % 16)));
  }
  const bool three = hi[S - 1];
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t u = 0; u < U; ++u) {
      const float* src = rows[u] + c * wp + a0;
      const __m512 v0 = _mm512_load_ps(src), v1 = _mm512_load_ps(src + 16);
      const __m512 v2 = three ? _mm512_load_ps(src + 32) : v1;
      _mm512_store_ps(d, hi[0] ? _mm512_permutex2var_ps(v1, idx[0], v2) : _mm512_permutex2var_ps(v0, idx[0], v1));
      if (S > 1)
        _mm512_store_ps(d + 16,
                        hi[1] ? _mm512_permutex2var_ps(v1, idx[1], v2) : _mm512_permutex2var_ps(v0, idx[1], v1));
      if (S > 2)
        _mm512_store_ps(d + 32,
                        hi[2] ? _mm512_permutex2var_ps(v1, idx[2], v2) : _mm512_permutex2var_ps(v0, idx[2], v1));
      d += 16 * S;
    }
}

__attribute__((target("avx2"))) void copy_taps_avx2(const float* const* rows, int64_t U, int64_t wp, int64_t c0,
                                                     int64_t c1, int64_t S, int64_t j0, int64_t dw, int vw, float* d) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t u = 0; u < U; ++u) {
      const float* src = rows[u] + c * wp + j0;
      for (int64_t s = 0; s < S; ++s, d += vw)
        for (int j = 0; j < vw; j += 8) _mm256_store_ps(d + j, _mm256_loadu_ps(src + s * dw + j));
    }
}

// Q pixels, sw apart from s, to d: masked vectors at stride 1, else one by one.
__attribute__((target("avx512f"))) inline void copy_run_avx512(const float* s, int64_t Q, int64_t sw, float* d) {
  if (sw == 1) {
    for (int64_t q = 0; q < Q; q += 16) {
      const __mmask16 m = first(Q - q);
      _mm512_mask_storeu_ps(d + q, m, _mm512_maskz_loadu_ps(m, s + q));
    }
  } else {
    for (int64_t q = 0; q < Q; ++q) d[q] = s[q * sw];
  }
}

__attribute__((target("avx512f"))) void copy_taps_flat_avx512(const FlatTaps& f, const float* const* rows, int64_t c0,
                                                              int64_t c1, float* d) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = 0; r < f.R; ++r)
      for (int64_t s = 0; s < f.S; ++s, d += f.seg) {
        for (int64_t p = 0; p < f.P; ++p)
          copy_run_avx512(rows[p * f.sh + r * f.dh] + c * f.wp + f.col + s * f.dw, f.Q, f.sw, d + p * f.Q);
        for (int64_t j = f.P * f.Q; j < f.seg; j += 16)
          _mm512_mask_storeu_ps(d + j, first(f.seg - j), _mm512_setzero_ps());
      }
}

}  // namespace

void copy_taps_flat(const FlatTaps& f, const float* const* rows, int64_t c0, int64_t c1, float* d, Isa isa) {
  if (isa == kAvx512) return copy_taps_flat_avx512(f, rows, c0, c1, d);
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = 0; r < f.R; ++r)
      for (int64_t s = 0; s < f.S; ++s, d += f.seg) {
        for (int64_t p = 0; p < f.P; ++p) {
          const float* src = rows[p * f.sh + r * f.dh] + c * f.wp + f.col + s * f.dw;
          for (int64_t q = 0; q < f.Q; ++q) d[p * f.Q + q] = src[q * f.sw];
        }
        std::fill(d + f.P * f.Q, d + f.seg, 0.f);
      }
}

void copy_taps(const float* const* rows, int64_t U, int64_t wp, int64_t c0, int64_t c1, int64_t S, int64_t j0,
               int64_t sw, int64_t dw, int vw, float* d, Isa isa) {
  if (isa == kAvx512 && sw == 1 && vw == 16 && S >= 2 && S <= 3 && j0 % 16 + (S - 1) * dw < 32)
    return copy_taps_aligned_avx512(rows, U, wp, c0, c1, S, j0, dw, d);
  if (isa == kAvx512 && sw == 1 && vw % 16 == 0) return copy_taps_avx512(rows, U, wp, c0, c1, S, j0, dw, vw, d);
  if (isa == kAvx2 && sw == 1 && vw % 8 == 0) return copy_taps_avx2(rows, U, wp, c0, c1, S, j0, dw, vw, d);
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t u = 0; u < U; ++u) {
      const float* src = rows[u] + c * wp + j0;
      for (int64_t s = 0; s < S; ++s, d += vw) {
        if (sw == 1) {
          std::memcpy(d, src + s * dw, vw * sizeof(float));
        } else {
          for (int j = 0; j < vw; ++j) d[j] = src[s * dw + j * sw];
        }
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

// Channels-last output (unit channel stride): 16 channels × 16 pixels at a time, transposed in registers so each
// pixel's channels go out as one store, with bias, activation and residual applied per pixel vector. Unrolled
// and branch-free (channels past K load with an empty mask), so the block stays in registers.
__attribute__((target("avx512f"))) void store_cl_avx512(const Store& st, const float* acc, int64_t ld, int64_t o,
                                                        int64_t ro, int cnt) {
  for (int j0 = 0; j0 < cnt; j0 += 16) {
    const int nj = std::min(16, cnt - j0);
    for (int64_t k0 = 0; k0 < st.K; k0 += 16) {
      const int64_t nk = std::min<int64_t>(16, st.K - k0);
      const __mmask16 mk = first(nk);
      __m512 r[16];
      if (nk == 16) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(acc + (k0 + i) * ld + j0);
      } else {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i)
          r[i] = _mm512_maskz_loadu_ps(i < nk ? 0xffff : 0, acc + (k0 + (i < nk ? i : 0)) * ld + j0);
      }
      transpose16(r);
      const __m512 bias = st.bias ? _mm512_maskz_loadu_ps(mk, st.bias + k0) : _mm512_setzero_ps();
      float* out = st.out + o + j0 * st.os3 + k0;
      const float* res = st.res ? st.res + ro + j0 * st.rs3 + k0 : nullptr;
      if (nj == 16 && nk == 16) {
        // Activation dispatched once per block, each loop a straight run over registers.
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) r[j] = _mm512_add_ps(r[j], bias);
        if (st.act == kActRelu) {
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) r[j] = _mm512_max_ps(_mm512_setzero_ps(), r[j]);
        } else if (st.act != kActNone) {
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) r[j] = act512(r[j], st);
        }
        if (res) {
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) r[j] = _mm512_add_ps(r[j], _mm512_loadu_ps(res + j * st.rs3));
        }
        if (st.stream && (reinterpret_cast<uintptr_t>(out) & 63) == 0 && (st.os3 & 15) == 0) {
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) _mm512_stream_ps(out + j * st.os3, r[j]);
        } else {
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) _mm512_storeu_ps(out + j * st.os3, r[j]);
        }
      } else {
        for (int j = 0; j < nj; ++j) {
          __m512 v = act512(_mm512_add_ps(r[j], bias), st);
          if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, res + j * st.rs3));
          _mm512_mask_storeu_ps(out + j * st.os3, mk, v);
        }
      }
    }
  }
}

// The AVX2 form of store_cl_avx512: 8 channels × 8 pixels at a time, transposed in registers; the K tail scalar.
__attribute__((target("avx2,fma"))) void store_cl_avx2(const Store& st, const float* acc, int64_t ld, int64_t o,
                                                      int64_t ro, int cnt) {
  const int64_t K8 = st.K / 8 * 8;
  const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(st.slope), six = _mm256_set1_ps(kRelu6Max);
  for (int j0 = 0; j0 < cnt; j0 += 8) {
    const int nj = std::min(8, cnt - j0);
    for (int64_t k0 = 0; k0 < K8; k0 += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(acc + (k0 + i) * ld + j0);
      transpose8(r);
      const __m256 bias = st.bias ? _mm256_loadu_ps(st.bias + k0) : zero;
      for (int j = 0; j < nj; ++j) {
        __m256 v = _mm256_add_ps(r[j], bias);
        if (st.act == kActRelu) {
          v = _mm256_max_ps(zero, v);
        } else if (st.act == kActLeaky) {
          v = _mm256_blendv_ps(v, _mm256_mul_ps(v, slope), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        } else if (st.act == kActRelu6) {
          v = _mm256_min_ps(six, _mm256_max_ps(zero, v));
        } else if (st.act >= kActSilu) {
          v = act_wide_v(v, st.act);
        }
        if (st.res) v = _mm256_add_ps(v, _mm256_loadu_ps(st.res + ro + (j0 + j) * st.rs3 + k0));
        _mm256_storeu_ps(st.out + o + (j0 + j) * st.os3 + k0, v);
      }
    }
    for (int64_t k = K8; k < st.K; ++k)
      for (int j = j0; j < j0 + nj; ++j)
        st.out[o + j * st.os3 + k] = epilogue(acc[k * ld + j], st, k) + (st.res ? st.res[ro + j * st.rs3 + k] : 0.f);
  }
}

// NCHW-like output (unit pixel stride): each channel's pixels are one contiguous run.
__attribute__((target("avx512f"))) void store_rows_avx512(const Store& st, const float* acc, int64_t ld, int64_t o,
                                                          int64_t ro, int cnt) {
  for (int64_t k = 0; k < st.K; ++k) {
    const __m512 b = _mm512_set1_ps(st.bias ? st.bias[k] : 0.f);
    for (int j = 0; j < cnt; j += 16) {
      const __mmask16 m = first(cnt - j);
      __m512 v = act512(_mm512_add_ps(_mm512_loadu_ps(acc + k * ld + j), b), st);
      if (st.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, st.res + ro + k * st.rs1 + j));
      _mm512_mask_storeu_ps(st.out + o + k * st.os1 + j, m, v);
    }
  }
}

}  // namespace

bool stream_pays(int64_t out_bytes, int64_t threads) {
  static const int64_t l2 = [] {
    const long b = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return b > 0 ? static_cast<int64_t>(b) : int64_t(1) << 20;
  }();
  return out_bytes / std::max<int64_t>(1, threads) * 2 >= 3 * l2;
}

namespace {

// cnt pixels from output offset o (residual offset ro), channels k < st.K from acc[k·ld + j].
void store_at(const Store& st, const float* acc, int64_t ld, int64_t o, int64_t ro, int cnt, Isa isa) {
  const bool avx512 = isa == kAvx512;
  if (avx512 && st.os1 == 1 && (!st.res || st.rs1 == 1)) return store_cl_avx512(st, acc, ld, o, ro, cnt);
  if (avx512 && st.os3 == 1 && (!st.res || st.rs3 == 1)) return store_rows_avx512(st, acc, ld, o, ro, cnt);
  if (isa == kAvx2 && st.os1 == 1 && (!st.res || st.rs1 == 1)) return store_cl_avx2(st, acc, ld, o, ro, cnt);
  for (int64_t k = 0; k < st.K; ++k) {
    const float* a = acc + k * ld;
    float* out = st.out + o + k * st.os1;
    const float* res = st.res ? st.res + ro + k * st.rs1 : nullptr;
    for (int j = 0; j < cnt; ++j) out[j * st.os3] = epilogue(a[j], st, k) + (res ? res[j * st.rs3] : 0.f);
  }
}

}  // namespace

void store_tile(const Store& st, const float* acc, int64_t ld, int64_t n, int64_t p, int64_t q0, int cnt,
                Isa isa) {
  if (st.r == 1)
    return store_at(st, acc, ld, n * st.os0 + p * st.os2 + q0 * st.os3,
                    st.res ? n * st.rs0 + p * st.rs2 + q0 * st.rs3 : 0, cnt, isa);
  // PixelShuffle: sub-pixel (i, j) holds a contiguous run of K/r² channels, its pixels r columns apart in output
  // row p·r + i: a store of K/r² channels with r times the pixel strides.
  const int64_t r = st.r, Cs = st.K / (r * r);
  Store sub = st;
  sub.K = Cs;
  sub.os3 = st.os3 * r;
  sub.rs3 = st.rs3 * r;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < r; ++j) {
      const int64_t s = i * r + j;
      sub.bias = st.bias ? st.bias + s * Cs : nullptr;
      store_at(sub, acc + s * Cs * ld, ld, n * st.os0 + (p * r + i) * st.os2 + (q0 * r + j) * st.os3,
               st.res ? n * st.rs0 + (p * r + i) * st.rs2 + (q0 * r + j) * st.rs3 : 0, cnt, isa);
    }
}

}  // namespace sparse
}  // namespace sft
