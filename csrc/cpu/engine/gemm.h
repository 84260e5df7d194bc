// BLIS-style blocked GEMM engine shared by the CPU ops.
//
//   C(M×N) = A(M×K) · B(K×N), fp32, computed tile by tile by an MR×NR register-blocked micro-kernel.
//   A is packed per (MC×KC) block by an op-supplied packer (so conv packs im2col rows straight from the
//   input: implicit GEMM, no im2col buffer); B is pre-packed once per call into NR-wide panels.
//   The op-supplied store writes each finished tile with the fused epilogue.
//
// Packed layouts (KU = 8 k-steps interleaved so every broadcast address is a constant offset):
//   A micro-panel (MR rows × kc): [ceil(kc/8)][MR][8], zero-padded rows and k.
//   B panel (K × NR):             [Kpad][NR] with Kpad = round_up(K, 8), zero-padded columns and k.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <cstring>
#include <string>
#include <vector>

namespace sft {

constexpr int KU = 8;
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

enum Act : int { kActNone = 0, kActRelu = 1, kActLeaky = 2 };

// Where a micro-kernel writes its tile: rows [0, mr) × cols [0, nr) of C at c + i*ldc + j.
//   accumulate: C += acc (else C = acc); last: then add bias[j], activate, add res[i*ldres + j].
struct KOut {
  float* c;
  int64_t ldc;
  const float* res;
  int64_t ldres;
  const float* bias;
  int act;
  float slope;
  bool accumulate, last;
  int mr, nr;
  // Fetch the tile's own C rows for writing before the k loop (deep k loops only: short ones cannot hide
  // the misses).
  bool prefetch = false;
  // Write C with non-temporal stores (one-pass tiles of an output too big for cache; see gemm_driver).
  bool stream = false;
};

// A direct conv's output, residual and bias with its epilogue: tile() is the one-pass KOut (the whole K in one
// call) of rows [0, rows) × channels [j, j + cols) at offset off in the output (pitch ld) and roff in the
// residual (pitch rld).
struct ConvOut {
  float* out;
  const float* res;
  const float* bias;
  int act;
  float slope;
  KOut tile(int64_t off, int64_t ld, int64_t roff, int64_t rld, int64_t j, int rows, int cols) const {
    return KOut{out + off, ld, res ? res + roff : nullptr, rld, bias ? bias + j : nullptr, act, slope, false, true,
                rows, cols};
  }
};

// acc[MR][NR] = sum_k A[i][k] B[k][j] over kb blocks of 8 k-steps, then the KOut epilogue.
using UKernelFn = void (*)(int64_t kb, const float* a, const float* b, const KOut& out);

// The same with A unpacked: rows [0, out.mr) at a + i·lda (lda in floats), k-steps contiguous, any number k of
// them (B rows past k are never read).
using UKernelStridedFn = void (*)(int64_t k, const float* a, int64_t lda, const float* b, const KOut& out);

// A conv tile read in place from a padded input, for every tap: tap t's MR rows are at a + toff[t] bytes +
// i·lda floats, kb blocks of 8 k-steps then kt single ones; B runs through the taps' k-steps in order. Rows
// [0, rows ≤ MR) are computed. Given `out`, a tile it can store whole (MR rows, NR columns, no residual, not
// accumulating) is written there with its epilogue and true is returned; otherwise the raw accumulators go to
// tile (row pitch NR) and the caller stores them with the ISA's epilogue, possibly in pieces.
using UKernelTapsFn = bool (*)(int64_t kb, int64_t kt, int64_t ntaps, const int64_t* toff, const float* a,
                               int64_t lda, const float* b, float* tile, int rows, const KOut* out);
// Writes tile rows [0, out.mr) (row pitch NR) to out with the KOut epilogue.
using EpilogueFn = void (*)(const float* tile, const KOut& out);

struct UKernel {
  const char* isa;
  int mr, nr;
  UKernelFn fn;
  UKernelStridedFn fn_strided = nullptr;  // null: this ISA always packs A
  UKernelTapsFn fn_taps = nullptr;        // null: convs pack A (implicit GEMM) instead
  EpilogueFn epilogue = nullptr;
};

struct Blocking {
  int64_t mc, kc, nc;  // rows per A block, k per block (multiple of 8), columns per B block
};

// The micro-kernel for this CPU (or the one forced by SFT_KERNELS_ISA=avx512|avx2|generic).
const UKernel& ukernel();
const UKernel& ukernel_for(const std::string& isa);  // throws if this CPU cannot run it
Blocking blocking(const UKernel& uk);  // defaults, overridden by SFT_KERNELS_GEMM_BLOCKING="MC,KC,NC"
void set_blocking(int64_t mc, int64_t kc, int64_t nc);  // 0 = keep default
std::string gemm_config();
double fma_peak_gflops(int64_t iters);  // measured fp32 FMA peak over torch's threads
double ukernel_ceiling_gflops(int64_t k, int64_t iters);  // the micro-kernel alone, operands in cache

// A tensor derived from `weight` (fp32, any layout), built once by build(weight made contiguous) and cached by
// weight address, shape, strides, `tag` and a fingerprint (weight_cache.cpp): of every value (any change
// rebuilds it), or of the version counter and sampled values for weights checked by version.
int64_t weight_cache_entries();  // how many derived tensors the cache holds (tests)
int64_t set_weight_check(int64_t mode);  // 0 auto, 1 version, 2 full (weight_cache.cpp); returns the previous
void trust_weight(const at::Tensor& weight, bool trust);  // auto mode checks this tensor by its version counter
at::Tensor cached_weight_transform(const at::Tensor& weight, int64_t tag,
                                   const std::function<at::Tensor(const at::Tensor&)>& build);

// at::empty for op outputs, except that buffers of 1 MiB or more are reused across calls (buffer_pool.cpp).
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options,
                        at::MemoryFormat fmt = at::MemoryFormat::Contiguous);
void buffer_pool_clear();
int64_t buffer_pool_idle_bytes();
// Sets the idle-bytes cap (MiB; 0 = off: outputs come from at::empty again) and returns the previous one; a
// negative value only reads it. Peak-memory measurement turns the pool off so every output is seen.
int64_t buffer_pool_set_capacity_mb(int64_t mb);

// dst[c] = x[c]·(scale[c] + 1) + shift[c] (SFT modulation of a conv input, fused into its packing).
void modulate_run(float* dst, const float* x, const float* scale, const float* shift, int64_t n);

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

// Activation with PyTorch's NaN semantics (NaN stays NaN).
inline float activate(float v, int act, float slope) {
  if (act == kActRelu) return v < 0.f ? 0.f : v;
  if (act == kActLeaky) return v < 0.f ? v * slope : v;
  return v;
}

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
// Whether reading A in place (rows lda floats apart) beats packing it. Packing costs a pass over A per column
// block, which a GEMM with few columns never earns back: in place measured (interleaved, vs the packed path)
// 1.27-1.29x on 16384x64x576 and 262144x64x576, 1.05-1.08x on 16384x256x576, 1.01-1.05x on 512³ and 640³, and
// K = 32 took as long to copy as to multiply. But L1 sets repeat every 4 KB: when more than half of a tile's
// rows share a set (with the next tile's rows prefetched beside them), they evict each other every k-step,
// 0.88-0.90x on 1024³ and 2048³ (rows 4 and 8 KB apart). A short K reads too little for that to matter.
constexpr int64_t kDirectMaxK = 256;
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
// Outputs of at least kStreamMinFloats (4 MiB, twice this machine's L2) from GEMMs with K <= kStreamMaxK are
// written with non-temporal stores. Only memory-bound GEMMs gain: a deep K hides the write-allocate reads behind
// its FMAs, and streaming a 512² 3x3 conv's output measured slower (1.06-1.08x -> 1.00-1.04x oneDNN; the stores
// hold line-fill buffers its loads need).
constexpr int64_t kStreamMinFloats = int64_t(1) << 20;
constexpr int64_t kStreamMaxK = 64;
// Orders this thread's non-temporal stores before its later stores (sfence).
void store_fence();

// A conv weight (K, C/groups, R, S) as the GEMM's B operand for kernel `uk`: per group, NR-wide panels
// [Kg/NR][Kpad][NR] with k = (r, s, c) (s_outer: (s, r, c), the stacked-rows order) and Kpad =
// round_up(R·S·C/groups, 8), groups one after another (group_panels floats each). Packed once per weight and
// cached by content (conv2d.cpp).
at::Tensor conv_weight_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk, bool s_outer = false);
int64_t conv_group_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk);

// How many K passes gemm_driver makes for a depth K at cache blocking KC. A K up to 2.5·KC runs in one pass: a
// second one re-reads and re-writes every C tile, which cost more than the smaller B micro-panel saved
// (16384×64×576, a 3×3×64 conv's GEMM, 1 thread: 1.05-1.13x -> 0.85-0.91x MKL in two passes of 288; 512³
// 1.00-1.01x -> 0.96-0.98x). A deeper K runs in equal passes of at most KC.
inline int64_t gemm_k_passes(int64_t K, int64_t KC) { return K <= 5 * KC / 2 ? 1 : (K + KC - 1) / KC; }

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
      // A deep k loop hides the misses of its tile's C when fetched first (KOut::prefetch); a short one cannot, and
      // stalls on them instead (K = 32: 0.66x -> 0.62x PyTorch with them, prefetching the next tile's C too).
      const bool prefetch_c = kc > 128;
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
        alignas(64) float tile[32 * 64];
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
