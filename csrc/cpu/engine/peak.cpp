#include "cpu/engine/peak.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cpu/engine/pack.h"
#include "cpu/engine/ukernel.h"

namespace sft {
namespace {
// Peak fp32 FMA throughput of this machine (GFLOP/s over all torch threads): 24 independent FMA chains per
// thread, enough to cover latency × ports on any current core. Benchmarks report % of this measured peak.
__attribute__((target("avx512f"))) double fma_loop_avx512(int64_t iters) {
  __m512 acc[24];
  const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, a);
  float s = 0.f;
  for (int i = 0; i < 24; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;  // returned so the chains are not optimised away
}
__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters) {
  __m256 acc[12];
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  for (int64_t t = 0; t < iters; ++t)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, a);
  alignas(32) float buf[8];
  float s = 0.f;
  for (int i = 0; i < 12; ++i) {
    _mm256_store_ps(buf, acc[i]);
    for (float v : buf) s += v;
  }
  return s;
}
}  // namespace

double fma_peak_gflops(int64_t iters) {
  const std::string isa = ukernel().isa;
  const double flop_per_iter = isa == "avx512" ? 24 * 32.0 : isa == "avx2" ? 12 * 16.0 : 0.0;
  if (flop_per_iter == 0.0) return 0.0;
  const int nthreads = at::get_num_threads();
  std::vector<double> sink(nthreads);
  const auto t0 = std::chrono::steady_clock::now();
  at::parallel_for(0, nthreads, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) sink[t] = isa == "avx512" ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
  });
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile double keep = sink[0];
  (void)keep;
  return nthreads * iters * flop_per_iter / sec / 1e9;
}

// What the chosen micro-kernel itself sustains over torch's threads with every operand in cache: each thread
// runs one packed A micro-panel (MR × K) against one B panel (K × NR) `iters` times into a stack tile. With
// K = 256 both panels fit a 48 KB L1; at K = 576 (a 64-channel 3×3 conv) B's 72 KB streams from L2 every call,
// as it does in the convs. No direct GEMM or conv on this kernel can beat it (Winograd does fewer FLOPs), so it is
// the ceiling their % of peak figures should be read against (the FMA loop above has no loads at all).
double ukernel_ceiling_gflops(int64_t k, int64_t iters) {
  const UKernel& uk = ukernel();
  const int64_t kpad = round_up(std::max<int64_t>(k, 1), KU);
  const int nthreads = at::get_num_threads();
  std::vector<double> sink(nthreads);
  const auto t0 = std::chrono::steady_clock::now();
  at::parallel_for(0, nthreads, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      std::vector<float> a(kpad * uk.mr + 16, 1e-3f), bp(kpad * uk.nr + 16, 1e-3f);
      alignas(64) float tile[kMaxMR * kMaxNR];
      float* ap = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(a.data()) + 63) & ~uintptr_t(63));
      float* bpp = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(bp.data()) + 63) & ~uintptr_t(63));
      const KOut out{tile, uk.nr, nullptr, 0, nullptr, kActNone, 0.f, false, false, uk.mr, uk.nr};
      for (int64_t i = 0; i < iters; ++i) uk.fn(kpad / KU, ap, bpp, out);
      sink[t] = tile[0];
    }
  });
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile double keep = sink[0];
  (void)keep;
  return nthreads * iters * 2.0 * uk.mr * uk.nr * kpad / sec / 1e9;
}
}  // namespace sft
