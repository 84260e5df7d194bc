// The sparse conv's tile kernels (tiles.h): per output block, for each of its nonzero blocks in the chunk, one
// offset load and KB weight broadcasts serve RB input vectors (one per output row of the tile) and KB × RB FMAs.
// Per nonzero of an unstructured weight (KB = 1): one offset load, one broadcast, RB loads, RB FMAs; a block of 4
// output channels shares its RB loads among 4·RB FMAs, which is why block sparsity runs closer to the FMA peak.
#include <immintrin.h>

#include <cstring>

#include "cpu/sparse_conv2d/tiles.h"

namespace sft {
namespace sparse {
namespace {

// CH independent sets of RB accumulators (nonzero n feeds set n % CH), summed at the end, where RB FMA chains
// alone are too few to cover the FMA latency.
template <int KB, int RB, int CH>
__attribute__((target("avx512f"), always_inline)) inline void block_avx512(const SparseChunk& t, int64_t kb) {
  const int64_t n0 = t.begin[kb * t.stride], n1 = t.end[kb * t.stride];
  if (t.accumulate && n0 == n1) return;
  float* out = t.acc + kb * KB * t.ld;
  __m512 acc[CH][KB][RB];
#pragma GCC unroll 8
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 8
    for (int u = 0; u < RB; ++u) {
      acc[0][b][u] = t.accumulate ? _mm512_load_ps(out + b * t.ld + 16 * u) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int h = 1; h < CH; ++h) acc[h][b][u] = _mm512_setzero_ps();
    }
  const float* x[RB];
#pragma GCC unroll 8
  for (int u = 0; u < RB; ++u) x[u] = t.x[u];
  const int32_t* off = t.off;
  const float* val = t.val;
  int64_t n = n0;
  for (; n + CH <= n1; n += CH) {
#pragma GCC unroll 8
    for (int h = 0; h < CH; ++h) {
      const int64_t o = off[n + h];
      __m512 xv[RB];
#pragma GCC unroll 8
      for (int u = 0; u < RB; ++u) xv[u] = _mm512_loadu_ps(x[u] + o);
#pragma GCC unroll 8
      for (int b = 0; b < KB; ++b) {
        const __m512 w = _mm512_set1_ps(val[(n + h) * KB + b]);
#pragma GCC unroll 8
        for (int u = 0; u < RB; ++u) acc[h][b][u] = _mm512_fmadd_ps(w, xv[u], acc[h][b][u]);
      }
    }
  }
  for (; n < n1; ++n) {
    const int64_t o = off[n];
#pragma GCC unroll 8
    for (int b = 0; b < KB; ++b) {
      const __m512 w = _mm512_set1_ps(val[n * KB + b]);
#pragma GCC unroll 8
      for (int u = 0; u < RB; ++u) acc[0][b][u] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x[u] + o), acc[0][b][u]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 8
    for (int u = 0; u < RB; ++u) {
      __m512 a = acc[0][b][u];
#pragma GCC unroll 8
      for (int h = 1; h < CH; ++h) a = _mm512_add_ps(a, acc[h][b][u]);
      _mm512_store_ps(out + b * t.ld + 16 * u, a);
    }
}

template <int KB, int RB, int CH>
__attribute__((target("avx512f"))) void tile_avx512(const SparseChunk& t) {
  for (int64_t kb = 0; kb < t.nkb; ++kb) block_avx512<KB, RB, CH>(t, kb);
}

template <int KB, int RB, int CH>
__attribute__((target("avx2,fma"), always_inline)) inline void block_avx2(const SparseChunk& t, int64_t kb) {
  const int64_t n0 = t.begin[kb * t.stride], n1 = t.end[kb * t.stride];
  if (t.accumulate && n0 == n1) return;
  float* out = t.acc + kb * KB * t.ld;
  __m256 acc[CH][KB][RB];
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int u = 0; u < RB; ++u) {
      acc[0][b][u] = t.accumulate ? _mm256_load_ps(out + b * t.ld + 8 * u) : _mm256_setzero_ps();
#pragma GCC unroll 4
      for (int h = 1; h < CH; ++h) acc[h][b][u] = _mm256_setzero_ps();
    }
  const float* x[RB];
#pragma GCC unroll 4
  for (int u = 0; u < RB; ++u) x[u] = t.x[u];
  int64_t n = n0;
  for (; n + CH <= n1; n += CH) {
#pragma GCC unroll 4
    for (int h = 0; h < CH; ++h) {
      const int64_t o = t.off[n + h];
      __m256 xv[RB];
#pragma GCC unroll 4
      for (int u = 0; u < RB; ++u) xv[u] = _mm256_loadu_ps(x[u] + o);
#pragma GCC unroll 4
      for (int b = 0; b < KB; ++b) {
        const __m256 w = _mm256_broadcast_ss(t.val + (n + h) * KB + b);
#pragma GCC unroll 4
        for (int u = 0; u < RB; ++u) acc[h][b][u] = _mm256_fmadd_ps(w, xv[u], acc[h][b][u]);
      }
    }
  }
  for (; n < n1; ++n) {
    const int64_t o = t.off[n];
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) {
      const __m256 w = _mm256_broadcast_ss(t.val + n * KB + b);
#pragma GCC unroll 4
      for (int u = 0; u < RB; ++u) acc[0][b][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[u] + o), acc[0][b][u]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int u = 0; u < RB; ++u) {
      __m256 a = acc[0][b][u];
#pragma GCC unroll 4
      for (int h = 1; h < CH; ++h) a = _mm256_add_ps(a, acc[h][b][u]);
      _mm256_store_ps(out + b * t.ld + 8 * u, a);
    }
}

template <int KB, int RB, int CH>
__attribute__((target("avx2,fma"))) void tile_avx2(const SparseChunk& t) {
  for (int64_t kb = 0; kb < t.nkb; ++kb) block_avx2<KB, RB, CH>(t, kb);
}

// The groups with mask M (taps r where bit r is set) into 8 rows of accumulators. Rows are 3·16 floats apart.
template <int M>
__attribute__((target("avx512f"), always_inline)) inline void groups_avx512(const float* x, const TapGroup* g,
                                                                             const TapGroup* e, __m512 (&acc)[8]) {
  constexpr int lo = M & 1 ? 0 : M & 2 ? 1 : 2, hi = M & 4 ? 2 : M & 2 ? 1 : 0;
  for (; g < e; ++g) {
    const float* b = x + g->off;
    __m512 v[10];
#pragma GCC unroll 10
    for (int u = lo; u < hi + 8; ++u) {
      v[u] = _mm512_load_ps(b + u * 48);
      // Rows two taps use stay in registers (else GCC folds a load into every FMA: 24 loads, not 10, for M = 7).
      if (__builtin_popcount(M) > 1) asm("" : "+v"(v[u]));
    }
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
      if (!(M >> r & 1)) continue;
      const __m512 w = _mm512_set1_ps(g->w[r]);
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) acc[i] = _mm512_fmadd_ps(w, v[i + r], acc[i]);
    }
  }
}

__attribute__((target("avx512f"))) void grouped_avx512(const GroupedChunk& t) {
  for (int64_t k = 0; k < t.nkb; ++k) {
    const int32_t* rg = t.ranges + kGroupRanges * k;
    if (t.accumulate && rg[0] == rg[7]) continue;
    float* out = t.acc + k * t.ld;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc[i] = t.accumulate ? _mm512_load_ps(out + 16 * i) : _mm512_setzero_ps();
    groups_avx512<1>(t.x, t.g + rg[0], t.g + rg[1], acc);
    groups_avx512<2>(t.x, t.g + rg[1], t.g + rg[2], acc);
    groups_avx512<3>(t.x, t.g + rg[2], t.g + rg[3], acc);
    groups_avx512<4>(t.x, t.g + rg[3], t.g + rg[4], acc);
    groups_avx512<5>(t.x, t.g + rg[4], t.g + rg[5], acc);
    groups_avx512<6>(t.x, t.g + rg[5], t.g + rg[6], acc);
    groups_avx512<7>(t.x, t.g + rg[6], t.g + rg[7], acc);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) _mm512_store_ps(out + 16 * i, acc[i]);
  }
}

// The AVX2 form: 4 rows of 8 pixels (rows 3·8 floats apart), groups alternating between two sets of accumulators
// so that 8 FMA chains cover the FMA latency (8 accumulators, up to 6 rows and a weight: 15 registers).
template <int M>
__attribute__((target("avx2,fma"), always_inline)) inline void group_avx2(const float* x, const TapGroup* g,
                                                                           __m256 (&acc)[4]) {
  constexpr int lo = M & 1 ? 0 : M & 2 ? 1 : 2, hi = M & 4 ? 2 : M & 2 ? 1 : 0;
  const float* b = x + g->off;
  __m256 v[6];
#pragma GCC unroll 6
  for (int u = lo; u < hi + 4; ++u) {
    v[u] = _mm256_load_ps(b + u * 24);
    if (__builtin_popcount(M) > 1) asm("" : "+x"(v[u]));
  }
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r) {
    if (!(M >> r & 1)) continue;
    const __m256 w = _mm256_broadcast_ss(g->w + r);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[i] = _mm256_fmadd_ps(w, v[i + r], acc[i]);
  }
}

template <int M>
__attribute__((target("avx2,fma"), always_inline)) inline void groups_avx2(const float* x, const TapGroup* g,
                                                                            const TapGroup* e, __m256 (&a0)[4],
                                                                            __m256 (&a1)[4]) {
  for (; g + 2 <= e; g += 2) {
    group_avx2<M>(x, g, a0);
    group_avx2<M>(x, g + 1, a1);
  }
  if (g < e) group_avx2<M>(x, g, a0);
}

__attribute__((target("avx2,fma"))) void grouped_avx2(const GroupedChunk& t) {
  for (int64_t k = 0; k < t.nkb; ++k) {
    const int32_t* rg = t.ranges + kGroupRanges * k;
    if (t.accumulate && rg[0] == rg[7]) continue;
    float* out = t.acc + k * t.ld;
    __m256 a0[4], a1[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      a0[i] = t.accumulate ? _mm256_load_ps(out + 8 * i) : _mm256_setzero_ps();
      a1[i] = _mm256_setzero_ps();
    }
    groups_avx2<1>(t.x, t.g + rg[0], t.g + rg[1], a0, a1);
    groups_avx2<2>(t.x, t.g + rg[1], t.g + rg[2], a0, a1);
    groups_avx2<3>(t.x, t.g + rg[2], t.g + rg[3], a0, a1);
    groups_avx2<4>(t.x, t.g + rg[3], t.g + rg[4], a0, a1);
    groups_avx2<5>(t.x, t.g + rg[4], t.g + rg[5], a0, a1);
    groups_avx2<6>(t.x, t.g + rg[5], t.g + rg[6], a0, a1);
    groups_avx2<7>(t.x, t.g + rg[6], t.g + rg[7], a0, a1);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) _mm256_store_ps(out + 8 * i, _mm256_add_ps(a0[i], a1[i]));
  }
}

// One row of VW pixels per tile.
template <int KB, int VW>
void tile_generic(const SparseChunk& t) {
  for (int64_t kb = 0; kb < t.nkb; ++kb) {
    const int64_t n0 = t.begin[kb * t.stride], n1 = t.end[kb * t.stride];
    if (t.accumulate && n0 == n1) continue;
    float* out = t.acc + kb * KB * t.ld;
    float acc[KB][VW];
    for (int b = 0; b < KB; ++b)
      for (int j = 0; j < VW; ++j) acc[b][j] = t.accumulate ? out[b * t.ld + j] : 0.f;
    for (int64_t n = n0; n < n1; ++n) {
      const float* xp = t.x[0] + t.off[n];
      for (int b = 0; b < KB; ++b) {
        const float w = t.val[n * KB + b];
        for (int j = 0; j < VW; ++j) acc[b][j] += w * xp[j];
      }
    }
    for (int b = 0; b < KB; ++b) std::memcpy(out + b * t.ld, acc[b], VW * sizeof(float));
  }
}

}  // namespace

// AVX-512: tiles of 16 pixels × 8 rows for KB = 1 (8 accumulators, enough chains to cover the FMA latency, so each
// offset and broadcast serves 8 FMAs: 3-6 % faster than 4 rows in 2 sets on Zen 4 at 50-90 % sparsity), × 4 rows
// for KB = 4 (16 accumulators, 4 input vectors and a broadcast).
const SparseKernels& kernels_avx512() {
  static const SparseKernels k{"avx512", 16, 8, 4, tile_avx512<1, 8, 1>, tile_avx512<4, 4, 1>,
                               grouped_avx512};
  return k;
}

// AVX2 (16 ymm registers): tiles of 8 pixels; KB = 1 over 4 rows in 2 sets (8 accumulators + 4 inputs), KB = 4
// over 2 rows (8 accumulators + 2 inputs).
const SparseKernels& kernels_avx2() {
  static const SparseKernels k{"avx2", 8, 4, 2, tile_avx2<1, 4, 2>, tile_avx2<4, 2, 1>, grouped_avx2};
  return k;
}

const SparseKernels& kernels_generic() {
  static const SparseKernels k{"generic", 16, 1, 1, tile_generic<1, 16>, tile_generic<4, 16>, nullptr};
  return k;
}

}  // namespace sparse
}  // namespace sft
