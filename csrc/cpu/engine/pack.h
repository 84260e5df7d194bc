// Packing of the GEMM operands into the micro-kernels' layouts (KU = 8 k-steps interleaved, config.h):
//   A micro-panel (MR rows × kc): [ceil(kc/8)][MR][8], zero-padded rows and k.
//   B panel (K × NR):             [Kpad][NR] with Kpad = round_up(K, 8), zero-padded columns and k.
// A is packed per (MC×KC) block by an op-supplied packer built from pack_a_run; B by pack_b / pack_b_rows.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/engine/config.h"

namespace sft {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Packs rows [k0, k0 + kc) × columns [j0, j0 + nc) of a matrix into nr-wide panels: panel p (columns
// j0 + p·nr, ...) at dst + p·panel_ld, its row k at (k − k0)·nr; rows up to round_up(kc, 8) and columns past
// j0 + nc are zero. row(k, j, w, d) writes the w values b(k, j .. j+w) to d. The walk is row-major, each
// source row read once and contiguously (a panel-at-a-time walk jumps a whole row pitch per 128 bytes, which
// the prefetchers do not follow: it cost 2 ms of a 15 ms 1024³ matmul), in parallel over rows.
template <class Row>
void pack_b_rows(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, int64_t panel_ld, float* dst,
                 const Row& row) {
  const int64_t kcp = round_up(kc, KU), npanels = (nc + nr - 1) / nr;
  at::parallel_for(0, kcp, 32, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t p = 0; p < npanels; ++p) {
        float* d = dst + p * panel_ld + r * nr;
        const int64_t w = r < kc ? std::min<int64_t>(nr, nc - p * nr) : 0;
        if (w) row(k0 + r, j0 + p * nr, w, d);
        for (int64_t j = w; j < nr; ++j) d[j] = 0.f;
      }
  });
}

// The pack_b_rows row functor of a strided matrix b(k, n) = src[k*ks + n*ns]. The unit-stride copy is a plain
// loop the compiler vectorizes inline: a memcpy call per 128-byte row costs more.
struct StridedRow {
  const float* src;
  int64_t ks, ns;
  void operator()(int64_t k, int64_t j0, int64_t w, float* d) const {
    const float* s = src + k * ks + j0 * ns;
    if (ns == 1)
      for (int64_t j = 0; j < w; ++j) d[j] = s[j];
    else
      for (int64_t j = 0; j < w; ++j) d[j] = s[j * ns];
  }
};

// All of a K×N matrix b(k, n) = src[k*ks + n*ns] as panels [N/NR][Kpad][NR] (pack_b_rows), Kpad = round_up(K, 8).
void pack_b(const float* src, int64_t K, int64_t N, int64_t ks, int64_t ns, int nr, float* dst);

// d[j·dstep + 0..7] = s[8j + 0..7] for j < n: one 32-byte move per chunk where the CPU has AVX (the baseline
// build's inlined memcpy does two 16-byte halves), the im2col / A-packing inner copy.
void copy_chunks8(float* d, int64_t dstep, const float* s, int64_t n);

// Fetches the n floats at p into cache, one line at a time. A-packing uses it for the next panel's row slice:
// each row's KC slice is a short run (1 KB) a row pitch from the last, too short for the hardware prefetchers
// to pick up before it ends.
inline void prefetch_run(const float* p, int64_t n) {
  for (int64_t e = 0; e < n; e += 16) __builtin_prefetch(p + e, 0, 3);
}

// Write `len` values src[e*stride] (zeros when src is null) to k positions [kk0, kk0+len) of row i of an A
// micro-panel laid out [k/8][MR][8]. Aligned unit-stride runs go as 8-float (32-byte) copies.
inline void pack_a_run(float* dst, int MR, int i, int64_t kk0, const float* src, int64_t len, int64_t stride) {
  int64_t e = 0;
  // Unaligned head, element by element.
  for (; e < len && (kk0 + e) % KU; ++e)
    dst[(kk0 + e) / KU * MR * KU + i * KU + (kk0 + e) % KU] = src ? src[e * stride] : 0.f;
  // Aligned body: whole 8-float groups, one 32-byte copy each.
  float* d = dst + (kk0 + e) / KU * MR * KU + i * KU;
  if (src && stride == 1) {
    const int64_t chunks = (len - e) / KU;
    copy_chunks8(d, MR * KU, src + e, chunks);
    e += chunks * KU;
    d += chunks * MR * KU;
  } else if (!src) {
    for (; e + KU <= len; e += KU, d += MR * KU) std::memset(d, 0, KU * sizeof(float));
  }
  // Tail (and strided sources).
  for (; e < len; ++e) dst[(kk0 + e) / KU * MR * KU + i * KU + (kk0 + e) % KU] = src ? src[e * stride] : 0.f;
}

}  // namespace sft
