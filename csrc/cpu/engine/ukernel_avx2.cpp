// The AVX2+FMA micro-kernel (kAvx2MR × kAvx2NR, config.h): per k-step NR/8 vector loads of B, MR broadcasts of A,
// MR·NR/8 FMAs, from the packed layouts (pack.h); the epilogue in plain C++.
#include <immintrin.h>

#include "cpu/engine/ukernel.h"

namespace sft {
namespace {

template <int MR, int NV>
__attribute__((target("avx2,fma"))) void ukr_avx2(int64_t kb, const float* a, const float* b, const KOut& o) {
  constexpr int NR = NV * 8;
  __m256 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  for (int64_t t = 0; t < kb; ++t) {
#pragma GCC unroll 8
    for (int kk = 0; kk < KU; ++kk) {
      __m256 bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + kk * NR + v * 8);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const __m256 av = _mm256_broadcast_ss(a + i * KU + kk);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
      }
    }
    a += MR * KU;
    b += KU * NR;
  }
  alignas(32) float tile[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_store_ps(tile + i * NR + v * 8, acc[i][v]);
  epilogue_scalar(tile, NR, o);
}

static_assert(kAvx2NR % 8 == 0, "the AVX2 tile is whole 8-float vectors wide");

}  // namespace

const UKernel kUKernelAvx2{"avx2", kAvx2MR, kAvx2NR, ukr_avx2<kAvx2MR, kAvx2NR / 8>};

}  // namespace sft
