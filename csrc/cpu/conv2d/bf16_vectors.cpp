// The bf16 block on AVX512-BF16 vectors, for CPUs with vdpbf16ps and no AMX (AMD Zen 4, Intel Cooper Lake): the
// same operands as the AMX block (amx_bf16.h: a block of 32 padded bf16 input rows, a packed 32-output panel) and
// the same sums, [32 pixels][32 outputs] in float32. One vdpbf16ps multiplies a broadcast channel pair of one pixel
// by that pair's row of the panel (16 outputs × 2 channels, as packed) and adds both products into 16 float32 sums:
// the int8 VNNI tile's arrangement (qconv2d) with pairs for quads. Rows of 11, 11 and 10 pixels × 2 vectors keep
// 22 sums and 2 weight vectors in registers; the broadcasts come from memory. Only the rows a block stores are
// computed (a strided conv's 7-pixel output rows: one pass of 11, not 32 rows).
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include <ATen/Parallel.h>

#include "cpu/conv2d/amx_bf16.h"

namespace sft::bf16 {
namespace {

// M pixels (element pitch pe) × the panel's outputs (Half: the first 16) into rows of acc (pitch 32 floats).
template <int M, bool Half>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), always_inline)) inline void rows(
    const uint16_t* a, int64_t pe, const int64_t* toff, int64_t ntaps, int64_t chunks, const uint16_t* b, float* acc) {
  __m512 s0[M], s1[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) s0[i] = s1[i] = _mm512_setzero_ps();
  const uint16_t* bp = b;
  for (int64_t t = 0; t < ntaps; ++t)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const uint16_t* at = a + toff[t] + ch * kCh;
      for (int cp = 0; cp < kCh / 2; ++cp, bp += 2 * kNR) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(bp);
        const __m512bh w1 = Half ? w0 : (__m512bh)_mm512_loadu_si512(bp + kNR);
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
          int32_t v;
          std::memcpy(&v, at + i * pe + 2 * cp, sizeof v);
          const __m512bh x = (__m512bh)_mm512_set1_epi32(v);
          s0[i] = _mm512_dpbf16_ps(s0[i], x, w0);
          if (!Half) s1[i] = _mm512_dpbf16_ps(s1[i], x, w1);
        }
      }
    }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    _mm512_store_ps(acc + i * kNR, s0[i]);
    if (!Half) _mm512_store_ps(acc + i * kNR + 16, s1[i]);
  }
}

// The block's first m pixels (the rest of acc left as it was): passes of 16 (Half) or 11 pixels.
template <bool Half>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void vectors(const uint16_t* a, int64_t pitch,
                                                                           const int64_t* toff, int64_t ntaps,
                                                                           int64_t chunks, const uint16_t* b,
                                                                           float* acc, int m) {
  const int64_t pe = pitch / 2;
  if (Half) {  // one vector of sums per pixel
    for (int i = 0; i < m; i += 16) rows<16, true>(a + i * pe, pe, toff, ntaps, chunks, b, acc + i * kNR);
    return;
  }
  for (int i = 0; i < m; i += 11) {
    if (i < 22)
      rows<11, false>(a + i * pe, pe, toff, ntaps, chunks, b, acc + i * kNR);
    else
      rows<10, false>(a + i * pe, pe, toff, ntaps, chunks, b, acc + i * kNR);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void peak_loop(int64_t iters, float* sink) {
  __m512 s[12];
  for (int i = 0; i < 12; ++i) s[i] = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), w = (__m512bh)_mm512_set1_epi16(0x3f00);
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      s[i] = _mm512_dpbf16_ps(s[i], x, w);
      __asm__ volatile("" : : "v"(s[i]));  // 12 independent chains, none folded away
    }
  for (int i = 1; i < 12; ++i) s[0] = _mm512_add_ps(s[0], s[i]);
  _mm512_storeu_ps(sink, s[0]);
}

}  // namespace

template <bool Half>
void block_vectors(const uint16_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks,
                   const uint16_t* b, float* acc, int m) {
  vectors<Half>(a, pitch, toff, ntaps, chunks, b, acc, m);
}

template void block_vectors<true>(const uint16_t*, int64_t, const int64_t*, int64_t, int64_t, const uint16_t*,
                                  float*, int);
template void block_vectors<false>(const uint16_t*, int64_t, const int64_t*, int64_t, int64_t, const uint16_t*,
                                   float*, int);

double vectors_peak_gflops() {
  std::atomic<double> total{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t t0, int64_t t1) {
    constexpr int64_t kIters = 20000000;
    alignas(64) float sink[16];
    peak_loop(kIters / 10, sink);  // warm up
    const auto start = std::chrono::steady_clock::now();
    peak_loop(kIters, sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double cur = total.load();
    while (!total.compare_exchange_weak(cur, cur + double(t1 - t0) * kIters * 12 * 16 * 2 * 2 / s / 1e9)) {
    }
  });
  return total.load();
}

}  // namespace sft::bf16
