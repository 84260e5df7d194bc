// Prototype: a bf16 3×3 stride-1 conv on AMX tiles (tdpbf16ps), NHWC, to measure what a bf16 path would run at.
// Blocks of 32 output pixels (one output row) × 32 output channels: four 16×16 fp32 accumulator tiles; per (tap,
// 32-channel chunk) two A tiles (16 pixels × 32 bf16 channels, 64-byte rows at the pixel pitch of the padded input)
// and two B tiles (16 rows of channel pairs × 16 outputs × 2), four tdpbf16ps. Then the block's sums are stored
// (tilestored) and a vector epilogue adds the bias and writes fp32 output.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
using namespace std;
static double now() { return chrono::duration<double>(chrono::steady_clock::now().time_since_epoch()).count(); }
static uint16_t bf16(float f) { uint32_t u; memcpy(&u, &f, 4); return uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16); }
static float fromb(uint16_t b) { uint32_t u = uint32_t(b) << 16; float f; memcpy(&f, &u, 4); return f; }
struct alignas(64) Cfg { uint8_t palette, start; uint8_t res[14]; uint16_t colsb[16]; uint8_t rows[16]; };

// Eight 16-row × 64-byte tiles: 0-3 the fp32 sums, 4-5 A, 6-7 B.
__attribute__((target("amx-tile"))) static void configure() {
  Cfg cfg{}; cfg.palette = 1;
  for (int t = 0; t < 8; ++t) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

__attribute__((target("amx-tile,amx-bf16,avx512f"))) void conv(const uint16_t* xp, int Hp, int Wp, int C,
    const uint16_t* wp, const float* bias, float* y, int H, int W, int K) {
  configure();
  const int chunks = C / 32, panels = K / 32;
  const long pitch = long(C) * 2;  // bytes per pixel of the padded input
  alignas(64) float acc[32 * 32];
  for (int p = 0; p < H; ++p)
    for (int pn = 0; pn < panels; ++pn)  // a panel's weights (9·C·32 bf16) stay in L1 across the row's blocks
      for (int q0 = 0; q0 < W; q0 += 32) {
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        const uint16_t* bp = wp + long(pn) * 9 * chunks * 16 * 64;
        for (int r = 0; r < 3; ++r)
          for (int s = 0; s < 3; ++s) {
            const uint16_t* a = xp + (long(p + r) * Wp + q0 + s) * C;
            for (int ch = 0; ch < chunks; ++ch, bp += 16 * 64) {
#ifdef HOTA
              _tile_loadd(4, xp + ch * 32, HOTA);
              _tile_loadd(5, xp + 32 * C + ch * 32, HOTA);
#elif !defined(NOA)
              _tile_loadd(4, a + ch * 32, pitch);
              _tile_loadd(5, a + 16 * C + ch * 32, pitch);
#endif
#ifndef NOB
              _tile_loadd(6, bp, 128);
              _tile_loadd(7, bp + 32, 128);
#endif
              _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
            }
          }
#ifdef NOSTORE
        continue;
#endif
        _tile_stored(0, acc, 128); _tile_stored(1, acc + 16, 128);
        _tile_stored(2, acc + 16 * 32, 128); _tile_stored(3, acc + 16 * 32 + 16, 128);
        const int n = min(32, W - q0);
        const __m512 b0 = _mm512_loadu_ps(bias + pn * 32), b1 = _mm512_loadu_ps(bias + pn * 32 + 16);
        for (int i = 0; i < n; ++i) {
          float* o = y + (long(p) * W + q0 + i) * K + pn * 32;
          _mm512_storeu_ps(o, _mm512_add_ps(_mm512_load_ps(acc + i * 32), b0));
          _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_load_ps(acc + i * 32 + 16), b1));
        }
      }
  _tile_release();
}


// Variant: runs of G blocks of one output row; for each panel and 32-channel chunk, the run's blocks accumulate
// through a per-block buffer (tileloadd / tilestored of the 4 sums), so one (panel, chunk)'s B (9 taps, 18 KB) and
// the run's A for that chunk stay in L1 while they are reused.
template <int G>
__attribute__((target("amx-tile,amx-bf16,avx512f"))) void conv_runs(const uint16_t* xp, int Hp, int Wp, int C,
    const uint16_t* wp, const float* bias, float* y, int H, int W, int K) {
  configure();
  const int chunks = C / 32, panels = K / 32;
  const long pitch = long(C) * 2;
  alignas(64) static float acc[G][32 * 32];
  for (int p = 0; p < H; ++p)
    for (int q00 = 0; q00 < W; q00 += 32 * G)
      for (int pn = 0; pn < panels; ++pn) {
        for (int ch = 0; ch < chunks; ++ch)
          for (int g = 0; g < G; ++g) {
            const int q0 = q00 + 32 * g;
            if (q0 >= W) break;
            float* a4 = acc[g];
            if (ch == 0) { _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3); }
            else { _tile_loadd(0, a4, 128); _tile_loadd(1, a4 + 16, 128); _tile_loadd(2, a4 + 512, 128); _tile_loadd(3, a4 + 528, 128); }
            const uint16_t* bp = wp + (long(pn) * 9 * chunks) * 16 * 64 + long(ch) * 16 * 64;
            for (int r = 0; r < 3; ++r)
              for (int s = 0; s < 3; ++s, bp += long(chunks) * 16 * 64) {
                const uint16_t* a = xp + (long(p + r) * Wp + q0 + s) * C + ch * 32;
                _tile_loadd(4, a, pitch);
                _tile_loadd(5, a + 16 * C, pitch);
                _tile_loadd(6, bp, 128);
                _tile_loadd(7, bp + 32, 128);
                _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
              }
            _tile_stored(0, a4, 128); _tile_stored(1, a4 + 16, 128); _tile_stored(2, a4 + 512, 128); _tile_stored(3, a4 + 528, 128);
          }
        for (int g = 0; g < G; ++g) {
          const int q0 = q00 + 32 * g;
          if (q0 >= W) break;
          const int n = min(32, W - q0);
          const __m512 b0 = _mm512_loadu_ps(bias + pn * 32), b1 = _mm512_loadu_ps(bias + pn * 32 + 16);
          for (int i = 0; i < n; ++i) {
            float* o = y + (long(p) * W + q0 + i) * K + pn * 32;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_load_ps(acc[g] + i * 32), b0));
            _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_load_ps(acc[g] + i * 32 + 16), b1));
          }
        }
      }
  _tile_release();
}

int main(int argc, char** argv) {
  if (syscall(SYS_arch_prctl, 0x1023, 18)) { printf("no AMX permission\n"); return 1; }
  const int C = atoi(argv[1]), K = atoi(argv[2]), H = atoi(argv[3]), W = H, reps = atoi(argv[4]);
  const int Hp = H + 2, Wp = W + 2 + 32;  // the last block's tile rows may read past the row
  vector<float> x(long(H) * W * C), w(long(K) * C * 9), b(K);
  srand(1);
  for (auto& v : x) v = rand() / float(RAND_MAX) - 0.5f;
  for (auto& v : w) v = (rand() / float(RAND_MAX) - 0.5f) * 0.1f;
  for (auto& v : b) v = rand() / float(RAND_MAX);
  vector<uint16_t> xp(long(Hp) * Wp * C + 64 * C, 0), wp(long(K) * C * 9);
  // weights [panel][tap][chunk][pair row 16][32 outputs][2]
  for (int k = 0; k < K; ++k) for (int c = 0; c < C; ++c) for (int t = 0; t < 9; ++t) {
    const int pn = k / 32, kk = k % 32, ch = c / 32, cc = c % 32;
    wp[((((long(pn) * 9 + t) * (C / 32) + ch) * 16 + cc / 2) * 32 + kk) * 2 + cc % 2] = bf16(w[(long(k) * C + c) * 9 + t]);
  }
  vector<float> y(long(H) * W * K);
  double tconv = 0;
  vector<double> ts;
  for (int rep = 0; rep < reps; ++rep) {
    double t0 = now();
    for (int h = 0; h < H; ++h) for (int ww = 0; ww < W; ++ww)  // the padded bf16 copy (part of the call)
      for (int c = 0; c < C; ++c) xp[((long(h) + 1) * Wp + ww + 1) * C + c] = bf16(x[(long(h) * W + ww) * C + c]);
    double t1 = now();
#ifdef RUNS
    conv_runs<RUNS>(xp.data(), Hp, Wp, C, wp.data(), b.data(), y.data(), H, W, K);
#else
    conv(xp.data(), Hp, Wp, C, wp.data(), b.data(), y.data(), H, W, K);
#endif
    ts.push_back(now() - t0); tconv += now() - t1;
  }
  sort(ts.begin(), ts.end());
  // check a few outputs against the fp64 sum of bf16-rounded inputs and weights
  double maxerr = 0, maxref = 0;
  for (int probe = 0; probe < 200; ++probe) {
    const int p = rand() % H, q = rand() % W, k = rand() % K;
    double s = b[k];
    for (int r = 0; r < 3; ++r) for (int t = 0; t < 3; ++t) {
      const int ih = p + r - 1, iw = q + t - 1;
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
      for (int c = 0; c < C; ++c)
        s += double(fromb(bf16(x[(long(ih) * W + iw) * C + c]))) * fromb(bf16(w[(long(k) * C + c) * 9 + r * 3 + t]));
    }
    maxerr = max(maxerr, fabs(s - y[(long(p) * W + q) * K + k])); maxref = max(maxref, fabs(s));
  }
  const double flops = 2.0 * H * W * K * C * 9;
  printf("bf16 AMX conv %d->%d 3x3 @%d: median %.3f ms (conv alone %.3f ms mean), %.0f GFLOP/s; max err %.2e of %.2f\n",
         C, K, H, ts[ts.size() / 2] * 1e3, tconv / reps * 1e3, flops / ts[ts.size() / 2] / 1e9, maxerr, maxref);
}
