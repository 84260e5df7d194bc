// The int8 VNNI tile loop alone (no epilogue: raw int32 sums stored), 16384 pixels, one weight panel in L1, 1 thread.
// g++ -O3 -std=c++17 vnni_tile_ceiling.cpp -o ub && ./ub   (output: vnni_tile_ceiling.txt)
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <vector>
// A: MR x 2 vectors (32 ch), broadcast activations; B: MR x 4 vectors (64 ch)
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) void tile(const uint8_t* a, int64_t lda, const int8_t* b, int64_t kg, int32_t* out) {
  __m512i acc[MR][NV];
#pragma GCC unroll 64
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  for (int64_t g = 0; g < kg; ++g, b += NV * 64) {
    __m512i bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + 64 * v);
#pragma GCC unroll 64
    for (int i = 0; i < MR; ++i) {
      int32_t w; std::memcpy(&w, a + i * lda + 4 * g, 4);
      const __m512i x = _mm512_set1_epi32(w);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], x, bv[v]);
    }
  }
#pragma GCC unroll 64
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(out + (i * NV + v) * 16, acc[i][v]);
}
template <int MR, int NV>
void run(const char* name, int64_t C) {
  const int64_t M = 16384, kg = C / 4;
  std::vector<uint8_t> a(M * C + 4096, 1);
  std::vector<int8_t> b(kg * NV * 64, 1);
  std::vector<int32_t> out(MR * NV * 16);
  double best = 1e9;
  for (int rep = 0; rep < 20; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t m = 0; m + MR <= M; m += MR) tile<MR, NV>(a.data() + m * C, C, b.data(), kg, out.data());
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (t < best) best = t;
  }
  const double ops = 2.0 * (M / MR * MR) * C * NV * 16;
  printf("%-10s C=%4ld  %.1f us  %.0f GOP/s\n", name, (long)C, best * 1e6, ops / best / 1e9);
}
int main() {
  for (int64_t C : {32, 64, 128, 256}) {
    run<14, 2>("14x32", C);
    run<7, 4>("7x64", C);
    run<6, 4>("6x64", C);
    run<10, 3>("10x48", C);
  }
}
