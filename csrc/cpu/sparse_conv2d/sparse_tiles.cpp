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
      const int64_t o = off[n + h] * t.scale;
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
    const int64_t o = off[n] * t.scale;
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
      const int64_t o = t.off[n + h] * t.scale;
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
    const int64_t o = t.off[n] * t.scale;
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

// Tap groups (tiles.h) over RB rows of one vector V (GCC vector extension, lowered to the ISA of the function it is
// inlined into), in CH accumulator sets (group n feeds set n % CH) where RB chains alone are too few to cover the
// FMA latency.
typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));

// One group holding taps M (bit r: tap r): its rows (3·VW floats apart) loaded once, then an FMA per tap and row.
template <typename V, int RB, int M>
__attribute__((always_inline)) inline void group_rows(const float* x, const TapGroup* g, V (&acc)[RB]) {
  constexpr int VW = sizeof(V) / sizeof(float);
  constexpr int lo = M & 1 ? 0 : M & 2 ? 1 : 2, hi = M & 4 ? 2 : M & 2 ? 1 : 0;
  const float* b = x + g->off;
  V v[RB + 2];
#pragma GCC unroll 10
  for (int u = lo; u < hi + RB; ++u) {
    v[u] = *reinterpret_cast<const V*>(b + u * 3 * VW);
    // Rows two taps use stay in registers (else GCC folds a load into every FMA: 24 loads, not 10, for M = 7).
    if (__builtin_popcount(M) > 1) asm("" : "+v"(v[u]));
  }
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r) {
    if (!(M >> r & 1)) continue;
    const V w = V{} + g->w[r];
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) acc[i] += w * v[i + r];
  }
}

template <typename V, int RB, int CH, int M>
__attribute__((always_inline)) inline void groups(const float* x, const TapGroup* g, const TapGroup* e,
                                                  V (&acc)[CH][RB]) {
  for (; g + CH <= e; g += CH)
#pragma GCC unroll 2
    for (int h = 0; h < CH; ++h) group_rows<V, RB, M>(x, g + h, acc[h]);
  for (; g < e; ++g) group_rows<V, RB, M>(x, g, acc[0]);
}

template <typename V, int RB, int CH>
__attribute__((always_inline)) inline void grouped(const GroupedChunk& t) {
  constexpr int VW = sizeof(V) / sizeof(float);
  for (int64_t k = 0; k < t.nkb; ++k) {
    const int32_t* rg = t.ranges + kGroupRanges * k;
    if (t.accumulate && rg[0] == rg[7]) continue;
    float* out = t.acc + k * t.ld;
    V acc[CH][RB];
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      acc[0][i] = t.accumulate ? *reinterpret_cast<const V*>(out + VW * i) : V{};
#pragma GCC unroll 2
      for (int h = 1; h < CH; ++h) acc[h][i] = V{};
    }
    groups<V, RB, CH, 1>(t.x, t.g + rg[0], t.g + rg[1], acc);
    groups<V, RB, CH, 2>(t.x, t.g + rg[1], t.g + rg[2], acc);
    groups<V, RB, CH, 3>(t.x, t.g + rg[2], t.g + rg[3], acc);
    groups<V, RB, CH, 4>(t.x, t.g + rg[3], t.g + rg[4], acc);
    groups<V, RB, CH, 5>(t.x, t.g + rg[4], t.g + rg[5], acc);
    groups<V, RB, CH, 6>(t.x, t.g + rg[5], t.g + rg[6], acc);
    groups<V, RB, CH, 7>(t.x, t.g + rg[6], t.g + rg[7], acc);
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      V a = acc[0][i];
#pragma GCC unroll 2
      for (int h = 1; h < CH; ++h) a += acc[h][i];
      *reinterpret_cast<V*>(out + VW * i) = a;
    }
  }
}

// AVX-512: 8 rows of 16 pixels, one set (8 accumulators, up to 10 rows and a weight). AVX2: 4 rows of 8 pixels, two
// sets (8 accumulators, up to 6 rows and a weight: 15 of 16 registers).
__attribute__((target("avx512f"))) void grouped_avx512(const GroupedChunk& t) { grouped<v16, 8, 1>(t); }
__attribute__((target("avx2,fma"))) void grouped_avx2(const GroupedChunk& t) { grouped<v8, 4, 2>(t); }

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
      const float* xp = t.x[0] + t.off[n] * t.scale;
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
// for KB = 4 (16 accumulators, 4 input vectors and a broadcast); flat maps of up to 64 pixels (7²) in tiles of 4
// vectors, two sets.
const SparseKernels& kernels_avx512() {
  static const SparseKernels k{"avx512", 16, 8, 4, tile_avx512<1, 8, 1>, tile_avx512<4, 4, 1>,
                               grouped_avx512, 4, tile_avx512<1, 4, 2>};
  return k;
}

// AVX2 (16 ymm registers): tiles of 8 pixels; KB = 1 over 4 rows in 2 sets (8 accumulators + 4 inputs), KB = 4
// over 2 rows (8 accumulators + 2 inputs).
const SparseKernels& kernels_avx2() {
  static const SparseKernels k{"avx2", 8, 4, 2, tile_avx2<1, 4, 2>, tile_avx2<4, 2, 1>, grouped_avx2, 0, nullptr};
  return k;
}

const SparseKernels& kernels_generic() {
  static const SparseKernels k{"generic", 16, 1, 1, tile_generic<1, 16>, tile_generic<4, 16>, nullptr, 0, nullptr};
  return k;
}

}  // namespace sparse
}  // namespace sft
