// BLIS-style blocked GEMM driver shared by the CPU ops.
//
//   C(M×N) = A(M×K) · B(K×N), fp32, computed tile by tile by an MR×NR register-blocked micro-kernel (ukernel.h).
//   A is packed per (MC×KC) block by an op-supplied packer (so conv packs im2col rows straight from the
//   input: implicit GEMM, no im2col buffer) or read in place; B is packed once per call into NR-wide panels
//   (pack.h). The op-supplied store writes each finished tile with the fused epilogue.
// Blocking and driver policies: config.h.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/engine/config.h"
#include "cpu/engine/pack.h"
#include "cpu/engine/ukernel.h"

namespace sft {

struct Blocking {
  int64_t mc, kc, nc;  // rows per A block, k per block (multiple of 8), columns per B block
};

// The blocking for kernel uk: config.h's defaults, overridden by SFT_KERNELS_GEMM_BLOCKING="MC,KC,NC", then by
// set_blocking (gemm.cpp).
Blocking blocking(const UKernel& uk);
void set_blocking(int64_t mc, int64_t kc, int64_t nc);  // 0 = keep default
// "isa=... MR=... NR=... MC=... KC=... NC=..." for the kernel in use.
std::string gemm_config();
// Orders this thread's non-temporal stores before its later stores (sfence).
void store_fence();

// Where tile rows go: element (row i, col j) of a tile lives at c + row_off[i] + j * col_stride.
struct TileOut {
  float* c;
  int64_t col_stride;
  const float* res;  // residual with the same addressing, or nullptr
  int64_t res_col_stride;
  const float* bias;  // per column, or nullptr
  int act;
  float slope;
};

// first: C = tile, else C += tile; last: add bias, activate, add residual.
inline void store_tile(const TileOut& o, const int64_t* row_off, const int64_t* res_off, int mr, int nr,
                       int64_t j0, const float* tile, int tile_ld, bool first, bool last) {
  for (int i = 0; i < mr; ++i) {
    float* __restrict c = o.c + row_off[i] + j0 * o.col_stride;
    const float* __restrict t = tile + i * tile_ld;
    const float* __restrict r = o.res ? o.res + res_off[i] + j0 * o.res_col_stride : nullptr;
    const float* __restrict bias = o.bias ? o.bias + j0 : nullptr;
    if (o.col_stride == 1 && (!r || o.res_col_stride == 1)) {
      for (int j = 0; j < nr; ++j) {
        float v = first ? t[j] : c[j] + t[j];
        if (last) {
          if (bias) v += bias[j];
          v = activate(v, o.act, o.slope);
          if (r) v += r[j];
        }
        c[j] = v;
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        float* cj = c + j * o.col_stride;
        float v = first ? t[j] : *cj + t[j];
        if (last) {
          if (bias) v += bias[j];
          v = activate(v, o.act, o.slope);
          if (r) v += r[j * o.res_col_stride];
        }
        *cj = v;
      }
    }
  }
}

// The `store` argument of gemm_driver for outputs that are always affine: never called.
struct NoTileStore {
  void operator()(int64_t, int, int64_t, int, const float*, bool, bool) const {}
};

// Output of a whole GEMM whose rows are affine (C(m, j) = c + m*ldc + j): micro-kernels write it directly.
struct AffineOut {
  float* c;
  int64_t ldc;
  const float* res;
  int64_t ldres;
  const float* bias;  // per column
  int act;
  float slope;
};

// gemm_driver's `brow` when B comes pre-packed (never called), and an A it may read in place.
struct NoBRow {
  void operator()(int64_t, int64_t, int64_t, float*) const {}
};
struct DirectA {
  const float* a;
  int64_t lda;
};
// Whether reading A in place (rows lda floats apart) beats packing it: at any K up to kDirectMaxK, deeper only
// while at most half of a tile's rows share an L1 set (config.h).
inline bool direct_a_pays(int64_t K, int64_t lda, int mr) {
  if (K <= kDirectMaxK) return true;
  int most = 0;
  for (int i = 0; i < mr; ++i) {
    int same = 0;
    for (int r = 0; r < mr; ++r) same += (r * lda * 4) % 4096 / 64 == (i * lda * 4) % 4096 / 64;
    most = std::max(most, same);
  }
  return 2 * most <= mr;
}

// How many K passes gemm_driver makes for a depth K at cache blocking KC: one up to 2.5·KC (config.h), else equal
// passes of at most KC.
inline int64_t gemm_k_passes(int64_t K, int64_t KC) {
  return K <= kOnePassKCNum * KC / kOnePassKCDen ? 1 : (K + KC - 1) / KC;
}

// Drives the blocked loops over an M×N×K problem in BLIS order: for each NC-column block and KC-deep slice
// (that KC×NC block of B is shared by every thread and stays in L2), the threads split the rows evenly in MR
// panels and sweep their share in MC-row blocks, each A block packed once and swept across the NC columns.
//   pack_a(i0, mr, k0, kc, dst): pack rows [i0, i0+mr) × k [k0, k0+kc) as one A micro-panel (MR rows).
//   B: either bp, pre-packed by pack_b for the kernel's NR with Kpad = round_up(K, 8) (weights, packed once),
//   or, with bp null, brow (a pack_b_rows row functor): each KC×NC block is then packed just before its use
//   into a buffer that stays in cache (a B seen once per call, as in matmul, never round-trips DRAM packed).
//   affine: if non-null, tiles go straight to it; otherwise each tile goes through a buffer to
//   store(i0, mr, j0, nr, tile, first, last) (tile_ld = NR), for outputs with non-affine rows (NCHW).
// A tile's K slices arrive in order (first, ..., last) and no two threads ever touch the same tile.
// kc > 0 overrides the KC blocking (ABC Strassen: one K pass, so each ±C update happens once per tile).
//   direct: if non-null, A is also addressable in place (row m at a + m·lda, k contiguous): the kernel reads
//   tiles there when its ISA has a strided kernel and K is a multiple of 8; a short last tile runs that ISA's
//   short-tile kernels on its own rows (a 7×7 image's 49 pixels: 3 tiles and 7 rows, which packed ran as a
//   14-row tile; a 512→2048 1×1 conv at 7×7 went 0.95-0.97x -> 1.01-1.05x oneDNN).
template <class PackA, class Store, class BRow = NoBRow>
void gemm_driver(const UKernel& uk, int64_t M, int64_t N, int64_t K, const float* bp, const PackA& pack_a,
                 const AffineOut* affine, const Store& store, int64_t kc_override = 0, const BRow& brow = {},
                 const DirectA* direct = nullptr) {
  const Blocking blk = blocking(uk);
  const int MR = uk.mr, NR = uk.nr;
  const int64_t MC = std::max<int64_t>(MR, blk.mc / MR * MR);
  int64_t KC = std::max<int64_t>(KU, (kc_override > 0 ? kc_override : blk.kc) / KU * KU);
  const int64_t passes = gemm_k_passes(K, KC);
  KC = round_up((K + passes - 1) / passes, KU);
  const int64_t NC = std::max<int64_t>(NR, blk.nc / NR * NR);
  const int64_t Kpad = round_up(K, KU);
  // The threads split the rows evenly in whole MR panels and sweep their share in MC-row blocks. Handing out
  // whole blocks instead left threads idle: 2048 rows are 18.3 blocks of 112, split 10 / 9 = 1120 / 928 rows.
  const int64_t panels = (M + MR - 1) / MR;
  const bool in_place = direct && uk.fn_strided && K % KU == 0;
  float* bbuf = nullptr;
  if (!bp) {
    thread_local std::vector<float> bbuf_store;
    bbuf_store.resize(static_cast<size_t>(round_up(std::min(NC, N), NR) * std::min(KC, Kpad)) + 16);
    bbuf = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(bbuf_store.data()) + 63) & ~uintptr_t(63));
  }
  for (int64_t j0 = 0; j0 < N; j0 += NC) {
    const int64_t j1 = std::min(N, j0 + NC);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0), kcp = round_up(kc, KU);
      const bool first = k0 == 0, last = k0 + kc >= K;
      const bool prefetch_c = kc > kPrefetchCMinK;
      // A large one-pass output of a shallow GEMM is written around the cache: a normal store first reads each
      // C line from memory (write-allocate), a third of a K = 32 GEMM's traffic, for data that leaves cache
      // again before anyone reads it.
      const bool stream_c = first && last && K <= kStreamMaxK && M * N >= kStreamMinFloats;
      const float* bblk = bp ? bp + (j0 / NR) * Kpad * NR + k0 * NR : bbuf;
      const int64_t panel_ld = bp ? Kpad * NR : kcp * NR;
      if (!bp) pack_b_rows(k0, kc, j0, j1 - j0, NR, panel_ld, bbuf, brow);
      at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
        thread_local std::vector<float> abuf_store;
        abuf_store.resize(static_cast<size_t>(MC * std::min(KC, Kpad)) + 64);
        float* abuf =
            reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(abuf_store.data()) + 63) & ~uintptr_t(63));
        alignas(64) float tile[kMaxMR * kMaxNR];
        const int64_t rows_end = std::min(M, p1 * MR);
        for (int64_t i0 = p0 * MR; i0 < rows_end; i0 += MC) {
          const int64_t i1 = std::min(rows_end, i0 + MC);
          for (int64_t i = i0; i < i1; i += MR)
            if (!in_place)
              pack_a(i, static_cast<int>(std::min<int64_t>(MR, i1 - i)), k0, kc, abuf + (i - i0) * kcp);
          // One tile: A in place or from the packed block.
          auto kernel = [&](int64_t i, int mr, const float* b, const KOut& ko) {
            if (in_place)
              uk.fn_strided(kc, direct->a + i * direct->lda + k0, direct->lda, b, ko);
            else
              uk.fn(kcp / KU, abuf + (i - i0) * kcp, b, ko);
          };
          for (int64_t j = j0; j < j1; j += NR) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, j1 - j));
            const float* b = bblk + (j - j0) / NR * panel_ld;
            for (int64_t i = i0; i < i1; i += MR) {
              const int mr = static_cast<int>(std::min<int64_t>(MR, i1 - i));
              if (affine) {
                const AffineOut& o = *affine;
                KOut ko{o.c + i * o.ldc + j, o.ldc, o.res ? o.res + i * o.ldres + j : nullptr, o.ldres,
                        o.bias ? o.bias + j : nullptr, o.act, o.slope, !first, last, mr, nr};
                ko.prefetch = prefetch_c;
                ko.stream = stream_c;
                kernel(i, mr, b, ko);
              } else {
                const KOut ko{tile, NR, nullptr, 0, nullptr, kActNone, 0.f, false, false, MR, NR};
                kernel(i, mr, b, ko);
                store(i, mr, j, nr, tile, first, last);
              }
            }
          }
        }
        if (stream_c) store_fence();  // non-temporal stores are weakly ordered: drain them before the join
      });
    }
  }
}

}  // namespace sft
