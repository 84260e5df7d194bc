// The sparse conv's tile kernels (tiles.h): for each nonzero block, NV input vectors of the tile's pixels are
// loaded once and multiplied by the block's KB broadcast weights into KB × NV accumulators. Per nonzero of an
// unstructured weight (KB = 1): one offset load, one broadcast, NV loads, NV FMAs; a block of 4 output channels
// shares its NV loads among 4·NV FMAs, which is why block sparsity runs closer to the FMA peak.
#include <immintrin.h>

#include <cstring>

#include "cpu/sparse_conv2d/tiles.h"

namespace sft {
namespace sparse {
namespace {

// KB = 1 keeps CH independent sets of NV accumulators (nonzero i feeds set i % CH), summed at the end: a single
// set is NV FMA chains, too few to cover the FMA latency on two ports.
template <int KB, int NV, int CH>
__attribute__((target("avx512f"))) void tile_avx512(const SparseTile& t) {
  __m512 acc[CH][KB][NV];
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      acc[0][b][v] = t.accumulate ? _mm512_loadu_ps(t.acc + b * t.ld + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int h = 1; h < CH; ++h) acc[h][b][v] = _mm512_setzero_ps();
    }
  const float* x = t.x;
  const int32_t* off = t.off;
  const float* val = t.val;
  int64_t i = 0;
  for (; i + CH <= t.n; i += CH) {
#pragma GCC unroll 4
    for (int h = 0; h < CH; ++h) {
      const float* xp = x + off[i + h];
      __m512 xv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_ps(xp + 16 * v);
#pragma GCC unroll 4
      for (int b = 0; b < KB; ++b) {
        const __m512 w = _mm512_set1_ps(val[(i + h) * KB + b]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[h][b][v] = _mm512_fmadd_ps(w, xv[v], acc[h][b][v]);
      }
    }
  }
  for (; i < t.n; ++i) {
    const float* xp = x + off[i];
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) {
      const __m512 w = _mm512_set1_ps(val[i * KB + b]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[0][b][v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(xp + 16 * v), acc[0][b][v]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512 a = acc[0][b][v];
#pragma GCC unroll 4
      for (int h = 1; h < CH; ++h) a = _mm512_add_ps(a, acc[h][b][v]);
      _mm512_storeu_ps(t.acc + b * t.ld + 16 * v, a);
    }
}

template <int KB, int NV>
__attribute__((target("avx2,fma"))) void tile_avx2(const SparseTile& t) {
  __m256 acc[KB][NV];
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[b][v] = t.accumulate ? _mm256_loadu_ps(t.acc + b * t.ld + 8 * v) : _mm256_setzero_ps();
  const float* x = t.x;
  const int32_t* off = t.off;
  const float* val = t.val;
  for (int64_t i = 0; i < t.n; ++i) {
    const float* xp = x + off[i];
    __m256 xv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) xv[v] = _mm256_loadu_ps(xp + 8 * v);
#pragma GCC unroll 4
    for (int b = 0; b < KB; ++b) {
      const __m256 w = _mm256_broadcast_ss(val + i * KB + b);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[b][v] = _mm256_fmadd_ps(w, xv[v], acc[b][v]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < KB; ++b)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(t.acc + b * t.ld + 8 * v, acc[b][v]);
}

template <int KB, int TW>
void tile_generic(const SparseTile& t) {
  float acc[KB][TW];
  for (int b = 0; b < KB; ++b)
    for (int j = 0; j < TW; ++j) acc[b][j] = t.accumulate ? t.acc[b * t.ld + j] : 0.f;
  for (int64_t i = 0; i < t.n; ++i) {
    const float* xp = t.x + t.off[i];
    for (int b = 0; b < KB; ++b) {
      const float w = t.val[i * KB + b];
      for (int j = 0; j < TW; ++j) acc[b][j] += w * xp[j];
    }
  }
  for (int b = 0; b < KB; ++b) std::memcpy(t.acc + b * t.ld, acc[b], TW * sizeof(float));
}

}  // namespace

// AVX-512: 64 pixels (4 vectors) per tile; KB = 4 holds 16 accumulators, 4 input vectors and a broadcast.
const SparseKernels& kernels_avx512() {
  static const SparseKernels k{"avx512", 64, 64, tile_avx512<1, 4, 2>, tile_avx512<4, 4, 1>};
  return k;
}

// AVX2 (16 ymm registers): KB = 1 over 4 vectors (32 pixels); KB = 4 over 2 (8 accumulators + 2 inputs).
const SparseKernels& kernels_avx2() {
  static const SparseKernels k{"avx2", 32, 16, tile_avx2<1, 4>, tile_avx2<4, 2>};
  return k;
}

const SparseKernels& kernels_generic() {
  static const SparseKernels k{"generic", 16, 16, tile_generic<1, 16>, tile_generic<4, 16>};
  return k;
}

}  // namespace sparse
}  // namespace sft
