// The AVX-512 micro-kernels (kAvx512MR × kAvx512NR = 14×32, config.h): packed A (k loop in inline asm), A read in
// place with a row pitch (strided), a conv tile through all its taps from a padded input (taps), short tiles of
// fewer than 14 rows, and the epilogue. Per k-step: 2 vector loads of B, 14 broadcasts of A, 28 FMAs.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "cpu/engine/act_vec.h"
#include "cpu/engine/ukernel.h"

namespace sft {
namespace {

// The assembly below is written for this shape: its register allocation, addressing and byte offsets.
static_assert(kAvx512MR == 14 && kAvx512NR == 32 && kAvx512TailRows == 7, "the AVX-512 kernels are 14×32");

// The KOut epilogue of an MR×NR tile (NR = 16·NV) in AVX-512 with masked tails. Kept out of line, reading the
// accumulators back from a stack tile: inlined, its masks and constants compete with the 28 accumulators for
// the 32 zmm registers and the compiler spills inside the k loop.
template <int MR, int NV>
__attribute__((noinline, target("avx512f,avx512vl,avx512dq,fma"))) void epilogue_avx512(const float* tile,
                                                                                       const KOut& o) {
  constexpr int NR = NV * 16;
  __mmask16 mask[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const int w = std::min(16, std::max(0, o.nr - v * 16));
    mask[v] = static_cast<__mmask16>((1u << w) - 1u);
  }
  const __m512 zero = _mm512_setzero_ps(), slope = _mm512_set1_ps(o.slope);
  // Non-temporal stores need whole, 64-byte aligned rows.
  const bool nt = o.stream && !o.accumulate && o.nr == NR && (reinterpret_cast<uintptr_t>(o.c) & 63) == 0 &&
                  (o.ldc & 15) == 0;
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= o.mr) break;
    float* c = o.c + i * o.ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      __m512 x = _mm512_load_ps(tile + i * NR + v * 16);
      if (o.accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], c + v * 16));
      if (o.last) {
        if (o.bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], o.bias + v * 16));
        if (o.act >= kActSilu) {
          x = act512_wide(x, o.act);
        } else if (o.act != kActNone) {  // x < 0 ? (relu: 0, leaky: x*slope) : x  -- NaN stays NaN
          const __mmask16 neg = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
          x = o.act == kActLeaky ? _mm512_mask_mul_ps(x, neg, x, slope) : _mm512_mask_mov_ps(x, neg, zero);
          if (o.act == kActRelu6)  // min(6, x): vminps returns its second operand for a NaN
            x = _mm512_min_ps(_mm512_set1_ps(kRelu6Max), x);
        }
        if (o.res) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], o.res + i * o.ldres + v * 16));
      }
      if (nt)
        _mm512_stream_ps(c + v * 16, x);
      else
        _mm512_mask_storeu_ps(c + v * 16, mask[v], x);
    }
  }
}

// The 14×32 AVX-512 micro-kernel. Its k loop is written in assembly because GCC, given 28 accumulators + 2 B
// vectors + a broadcast in 32 zmm registers, spills and shuffles registers inside the loop (measured: 35 extra
// moves and a spill per 8 k-steps, ~10 % slower in a 1024³ GEMM). Per k-step: 2 loads of B, 14 broadcasts of A
// (alternating zmm30/zmm31), 28 FMAs into zmm0-13 (columns 0-15) and zmm14-27 (columns 16-31).
#define SFT_ROW(addr, i, j, r)                                                   \
  "vbroadcastss " addr ", %%zmm" #r "\n\t"                                       \
  "vfmadd231ps %%zmm28, %%zmm" #r ", %%zmm" #i "\n\t"                            \
  "vfmadd231ps %%zmm29, %%zmm" #r ", %%zmm" #j "\n\t"
#define SFT_BLOAD(kk)                                                            \
  "vmovups " #kk "*128(%[b]), %%zmm28\n\t"                                        \
  "vmovups " #kk "*128+64(%[b]), %%zmm29\n\t"
// Packed A: row i of k-step kk at a + (8·i + kk) floats.
#define SFT_PA(i, kk) #i "*32+" #kk "*4(%[a])"
#define SFT_KSTEP(kk)                                                                                     \
  SFT_BLOAD(kk)                                                                                           \
  SFT_ROW(SFT_PA(0, kk), 0, 14, 30) SFT_ROW(SFT_PA(1, kk), 1, 15, 31) SFT_ROW(SFT_PA(2, kk), 2, 16, 30)    \
  SFT_ROW(SFT_PA(3, kk), 3, 17, 31) SFT_ROW(SFT_PA(4, kk), 4, 18, 30) SFT_ROW(SFT_PA(5, kk), 5, 19, 31)    \
  SFT_ROW(SFT_PA(6, kk), 6, 20, 30) SFT_ROW(SFT_PA(7, kk), 7, 21, 31) SFT_ROW(SFT_PA(8, kk), 8, 22, 30)    \
  SFT_ROW(SFT_PA(9, kk), 9, 23, 31) SFT_ROW(SFT_PA(10, kk), 10, 24, 30) SFT_ROW(SFT_PA(11, kk), 11, 25, 31) \
  SFT_ROW(SFT_PA(12, kk), 12, 26, 30) SFT_ROW(SFT_PA(13, kk), 13, 27, 31)
// Unpacked A with a row stride held in registers (l1 = lda, l3 = 3·lda, l5 = 5·lda bytes; a7 = row 7), so
// rows 0-13 are base + {0, 1, 2, 3, 4, 5, 6}·lda from a or a7 with x86 scaled-index addressing.
#define SFT_SKSTEP(kk)                                                                                      \
  SFT_BLOAD(kk)                                                                                             \
  SFT_ROW(#kk "*4(%[a])", 0, 14, 30) SFT_ROW(#kk "*4(%[a],%[l1])", 1, 15, 31)                               \
  SFT_ROW(#kk "*4(%[a],%[l1],2)", 2, 16, 30) SFT_ROW(#kk "*4(%[a],%[l3])", 3, 17, 31)                       \
  SFT_ROW(#kk "*4(%[a],%[l1],4)", 4, 18, 30) SFT_ROW(#kk "*4(%[a],%[l5])", 5, 19, 31)                       \
  SFT_ROW(#kk "*4(%[a],%[l3],2)", 6, 20, 30) SFT_ROW(#kk "*4(%[a7])", 7, 21, 31)                            \
  SFT_ROW(#kk "*4(%[a7],%[l1])", 8, 22, 30) SFT_ROW(#kk "*4(%[a7],%[l1],2)", 9, 23, 31)                     \
  SFT_ROW(#kk "*4(%[a7],%[l3])", 10, 24, 30) SFT_ROW(#kk "*4(%[a7],%[l1],4)", 11, 25, 31)                   \
  SFT_ROW(#kk "*4(%[a7],%[l5])", 12, 26, 30) SFT_ROW(#kk "*4(%[a7],%[l3],2)", 13, 27, 31)
#define SFT_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define SFT_ZERO_ALL                                                                                      \
  SFT_ZERO(0) SFT_ZERO(1) SFT_ZERO(2) SFT_ZERO(3) SFT_ZERO(4) SFT_ZERO(5) SFT_ZERO(6) SFT_ZERO(7) SFT_ZERO(8) \
  SFT_ZERO(9) SFT_ZERO(10) SFT_ZERO(11) SFT_ZERO(12) SFT_ZERO(13) SFT_ZERO(14) SFT_ZERO(15) SFT_ZERO(16)        \
  SFT_ZERO(17) SFT_ZERO(18) SFT_ZERO(19) SFT_ZERO(20) SFT_ZERO(21) SFT_ZERO(22) SFT_ZERO(23) SFT_ZERO(24)       \
  SFT_ZERO(25) SFT_ZERO(26) SFT_ZERO(27)
// M(addr, i, j) for rows 0-13 of a tile at %[a] / %[a7] = row 7 with row pitch l1 (as in SFT_SKSTEP); row r's
// two zmm are r and r + 14.
#define SFT_ROWS14(M)                                                                                          \
  M("(%[a])", 0, 14) M("(%[a],%[l1])", 1, 15) M("(%[a],%[l1],2)", 2, 16) M("(%[a],%[l3])", 3, 17)          \
  M("(%[a],%[l1],4)", 4, 18) M("(%[a],%[l5])", 5, 19) M("(%[a],%[l3],2)", 6, 20) M("(%[a7])", 7, 21)       \
  M("(%[a7],%[l1])", 8, 22) M("(%[a7],%[l1],2)", 9, 23) M("(%[a7],%[l3])", 10, 24)                         \
  M("(%[a7],%[l1],4)", 11, 25) M("(%[a7],%[l5])", 12, 26) M("(%[a7],%[l3],2)", 13, 27)
#define SFT_ST_U(addr, i, j) "vmovups %%zmm" #i ", " addr "\n\tvmovups %%zmm" #j ", 64+" addr "\n\t"
#define SFT_ST_NT(addr, i, j) "vmovntps %%zmm" #i ", " addr "\n\tvmovntps %%zmm" #j ", 64+" addr "\n\t"
#define SFT_STORE_ROWS(insn) SFT_ROWS14(SFT_ST_##insn)
// M(i, j) for the 14 accumulator pairs (row i: columns 0-15 in zmm i, 16-31 in zmm j).
#define SFT_PAIRS(M) \
  M(0, 14) M(1, 15) M(2, 16) M(3, 17) M(4, 18) M(5, 19) M(6, 20) M(7, 21) M(8, 22) M(9, 23) M(10, 24) M(11, 25) M(12, 26) M(13, 27)
#define SFT_ADDB(i, j) "vaddps %%zmm28, %%zmm" #i ", %%zmm" #i "\n\tvaddps %%zmm29, %%zmm" #j ", %%zmm" #j "\n\t"
// relu as max(0, x) with 0 first: maxps returns its second operand when either is NaN, so NaN stays NaN.
#define SFT_RELU(i, j) "vmaxps %%zmm" #i ", %%zmm30, %%zmm" #i "\n\tvmaxps %%zmm" #j ", %%zmm30, %%zmm" #j "\n\t"
// leaky relu: x < 0 (ordered: false for NaN) ? x * slope : x, the same operations as epilogue_avx512.
#define SFT_LEAKY1(i) "vcmpltps %%zmm30, %%zmm" #i ", %%k1\n\tvmulps %%zmm31, %%zmm" #i ", %%zmm" #i "%{%%k1%}\n\t"
#define SFT_LEAKY(i, j) SFT_LEAKY1(i) SFT_LEAKY1(j)
// relu6: relu, then min(6, x) with the bound (in zmm31) first, so NaN stays NaN again.
#define SFT_RELU6(i, j) SFT_RELU(i, j) "vminps %%zmm" #i ", %%zmm31, %%zmm" #i "\n\tvminps %%zmm" #j ", %%zmm31, %%zmm" #j "\n\t"
// The accumulators, plus C's own values first if %[acc] is non-zero (a K pass after the first), plus the 32 floats
// at %[bias] if it is not null, then activated (%[act]: 0 none, 1 relu, 2 leaky relu with slope %[slope], 3 relu6
// with its bound in %[slope]), to
// %[dst] with row pitch %[pitch] bytes (a, a7, l1, l3, l5 are free by now), with non-temporal stores if %[nt] is
// non-zero. The same operations in the same order as epilogue_avx512, so both give the same bits. Those are
// memory operands: as registers they left the strided kernel's asm without enough general registers in the ASan
// build (frame pointer kept).
#define SFT_ADDC2(addr, i, j) "vaddps " addr ", %%zmm" #i ", %%zmm" #i "\n\tvaddps 64+" addr ", %%zmm" #j ", %%zmm" #j "\n\t"
#define SFT_STORE_TILE                 \
  "mov %[dst], %[a]\n\t"              \
  "mov %[pitch], %[l1]\n\t"           \
  "lea (%[l1],%[l1],2), %[l3]\n\t"    \
  "lea (%[l1],%[l1],4), %[l5]\n\t"    \
  "lea (%[a],%[l1],8), %[a7]\n\t"     \
  "sub %[l1], %[a7]\n\t"              \
  "cmpq $0, %[acc]\n\t"               \
  "je 7f\n\t"                         \
  SFT_ROWS14(SFT_ADDC2)                \
  "7:\n\t"                            \
  "cmpq $0, %[bias]\n\t"              \
  "je 6f\n\t"                         \
  "mov %[bias], %[l5]\n\t"            \
  "vmovups (%[l5]), %%zmm28\n\t"      \
  "vmovups 64(%[l5]), %%zmm29\n\t"    \
  "lea (%[l1],%[l1],4), %[l5]\n\t"    \
  SFT_PAIRS(SFT_ADDB)                   \
  "6:\n\t"                             \
  "cmpl $0, %[act]\n\t"                \
  "je 8f\n\t"                          \
  "vpxord %%zmm30, %%zmm30, %%zmm30\n\t" \
  "cmpl $1, %[act]\n\t"                \
  "jne 9f\n\t"                         \
  SFT_PAIRS(SFT_RELU)                   \
  "jmp 8f\n"                            \
  "9:\n\t"                             \
  "vbroadcastss %[slope], %%zmm31\n\t" \
  "cmpl $3, %[act]\n\t"                \
  "jne 10f\n\t"                        \
  SFT_PAIRS(SFT_RELU6)                  \
  "jmp 8f\n"                            \
  "10:\n\t"                            \
  SFT_PAIRS(SFT_LEAKY)                  \
  "8:\n\t"                             \
  "cmpq $0, %[nt]\n\t"                \
  "jnz 3f\n\t"                        \
  SFT_STORE_ROWS(U)              \
  "jmp 4f\n"                           \
  "3:\n\t"                            \
  SFT_STORE_ROWS(NT)             \
  "4:\n\t"
// The whole tile: zero the accumulators, run kb blocks of 8 k-steps (`steps`, then `advance` moves the A
// pointers; B always moves 8 rows of 32 floats), then `tail` (single k-steps past the blocks, or nothing), then
// store the accumulators (SFT_STORE_TILE).
#define SFT_KLOOP(steps, advance, tail) \
  SFT_ZERO_ALL                    \
  "test %[kb], %[kb]\n\t"         \
  "jle 2f\n\t"                    \
  ".p2align 5\n"                  \
  "1:\n\t"                        \
  steps advance                   \
  "add $1024, %[b]\n\t"           \
  "dec %[kb]\n\t"                 \
  "jnz 1b\n"                      \
  "2:\n\t"                        \
  tail                            \
  SFT_STORE_TILE
#define SFT_ZMM_CLOBBERS                                                                                   \
  "k1", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",  \
      "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",      \
      "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31"

// With KOut::prefetch the tile's own C rows (for deep k loops) are fetched for writing before the k loop, so
// their misses (C rows are a row pitch apart, which no hardware prefetcher follows) hide behind the FMAs.
// always_inline: as a plain inline function GCC 12 judged it free of side effects (it only prefetches) and
// deleted the call, so no kernel prefetched at all (seen in the disassembly).
__attribute__((always_inline, target("avx512f,prfchw"))) inline void prefetch_c(const KOut& o) {
  if (!o.prefetch) return;
  const bool three = reinterpret_cast<uintptr_t>(o.c) & 63;  // 32 floats span 3 lines unaligned
  for (int i = 0; i < o.mr; ++i) {
    float* r = o.c + i * o.ldc;
    _m_prefetchw(r);
    _m_prefetchw(r + 16);
    if (three) _m_prefetchw(r + 31);
  }
}

// A tile's residual rows (read by its last K pass's epilogue) fetched before the k loop: they lie a row pitch
// apart, which no hardware prefetcher follows, and the epilogue had waited on each in turn (its adds were the hot
// spots). ResNet-50's 64→256 1×1 at 56² with its residual and ReLU, after another conv as in the model, Zen 4, 1
// thread, five alternating runs: 1.90-2.52 → 1.50-1.81 ms (without a residual ~1.0-1.3). Fetching the next
// tile's rows as well measured no better.
__attribute__((always_inline, target("avx512f"))) inline void prefetch_res(const KOut& o) {
  if (!o.res || !o.last) return;
  const int64_t bytes = int64_t(o.nr) * int64_t(sizeof(float));
  for (int i = 0; i < o.mr; ++i) {
    const char* r = reinterpret_cast<const char*>(o.res + i * o.ldres);
    for (int64_t off = 0; off < bytes + 63; off += 64) _mm_prefetch(r + std::min(off, bytes - 1), _MM_HINT_T0);
  }
}

// Where the asm stores the accumulators: a whole tile without a residual (bias and activation are applied in
// registers, after adding C's values on a K pass after the first) goes straight to C, with non-temporal stores
// under KOut::stream; any other to the stack tile for epilogue_avx512 (it was a third of the time of a K = 32
// GEMM's tile, and 6 % of a 2048³ one's with KC = 256).
struct TileDst {
  float* dst;
  int64_t pitch;  // bytes
  int64_t nt;
  const float* bias;
  int act;
  float slope;
  int64_t acc;
  bool plain;
};
inline TileDst tile_dst(const KOut& o, float* tile) {
  const bool plain = !o.res && o.nr == kAvx512NR && o.mr == kAvx512MR && o.act < kActSilu;  // (asm: relu-likes)
  if (!plain) return {tile, kAvx512NR * 4, 0, nullptr, kActNone, 0.f, 0, false};
  const bool nt = o.stream && !o.accumulate && (reinterpret_cast<uintptr_t>(o.c) & 63) == 0 && (o.ldc & 15) == 0;
  return {o.c,  o.ldc * 4, nt, o.last ? o.bias : nullptr, o.last ? o.act : kActNone,
          o.act == kActRelu6 ? kRelu6Max : o.slope, o.accumulate, true};
}

__attribute__((target("avx512f,avx512vl,avx512dq,fma,prfchw"))) void ukr_avx512_14x32(int64_t kb, const float* a,
                                                                                const float* b, const KOut& o) {
  alignas(64) float tile[kAvx512MR * kAvx512NR];
  prefetch_c(o);
  prefetch_res(o);
  const TileDst d = tile_dst(o, tile);
  const float* a7;
  int64_t l1, l3, l5;  // scratch for SFT_STORE_TILE
  asm volatile(
      SFT_KLOOP(SFT_KSTEP(0) SFT_KSTEP(1) SFT_KSTEP(2) SFT_KSTEP(3) SFT_KSTEP(4) SFT_KSTEP(5) SFT_KSTEP(6)
                SFT_KSTEP(7),
                "add $448, %[a]\n\t", "")
      : [a] "+r"(a), [b] "+r"(b), [kb] "+r"(kb), [a7] "=&r"(a7), [l1] "=&r"(l1), [l3] "=&r"(l3), [l5] "=&r"(l5)
      : [dst] "m"(d.dst), [pitch] "m"(d.pitch), [nt] "m"(d.nt), [bias] "m"(d.bias), [act] "m"(d.act), [slope] "m"(d.slope), [acc] "m"(d.acc)
      : "cc", "memory", SFT_ZMM_CLOBBERS);
  if (!d.plain) epilogue_avx512<kAvx512MR, kAvx512NR / 16>(tile, o);
}

// Fewer than 14 rows of a strided tile (a conv row's last tile: Q = 128 leaves 2 rows, and the 14-row kernel
// costs the same for 2 rows as for 14; conv0 at 128² spent 9 % of its kernel time on such rows). R ≤ 7 rows
// with A at a + i·lda, k-steps contiguous, B rows of 32 floats; the sums go to tile (row pitch 32), continuing
// from what it holds if `add` (a conv tap after the first). One chain per accumulator, k in order, as in the
// 14-row kernels: every path computes bit-identical sums (tests compare them with torch.equal).
template <int R>
__attribute__((target("avx512f,avx512vl,avx512dq,fma"))) void strided_rows_avx512(int64_t k, const float* a,
                                                                                 int64_t lda, const float* b,
                                                                                 float* tile, bool add) {
  __m512 acc[R][2];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) acc[i][v] = add ? _mm512_load_ps(tile + i * kAvx512NR + v * 16) : _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m512 b0 = _mm512_loadu_ps(b + kk * kAvx512NR), b1 = _mm512_loadu_ps(b + kk * kAvx512NR + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + kk]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < 2; ++v) _mm512_store_ps(tile + i * kAvx512NR + v * 16, acc[i][v]);
}

// Rows [0, rows) with rows < 14 of a strided tile, in chunks of up to 7 rows, sums to tile (continued if `add`).
void strided_tail_rows(int rows, int64_t k, const float* a, int64_t lda, const float* b, float* tile, bool add) {
  using RowsFn = void (*)(int64_t, const float*, int64_t, const float*, float*, bool);
  static constexpr RowsFn kRows[kAvx512TailRows + 1] = {
      nullptr,                strided_rows_avx512<1>, strided_rows_avx512<2>, strided_rows_avx512<3>,
      strided_rows_avx512<4>, strided_rows_avx512<5>, strided_rows_avx512<6>, strided_rows_avx512<7>};
  for (int i0 = 0; i0 < rows;) {
    const int c = std::min(kAvx512TailRows, rows - i0);
    kRows[c](k, a + i0 * lda, lda, b, tile + i0 * kAvx512NR, add);
    i0 += c;
  }
}

void strided_tail_avx512(int64_t k, const float* a, int64_t lda, const float* b, const KOut& o) {
  alignas(64) float tile[kAvx512MR * kAvx512NR];
  strided_tail_rows(o.mr, k, a, lda, b, tile, false);
  epilogue_avx512<kAvx512MR, kAvx512NR / 16>(tile, o);
}

// The same tile with A read in place, row i at a + i·lda (a row-major M×K operand, e.g. a 1×1 conv's
// channels-last input): with small K, packing A cost as much as the FMAs it feeds. A partial tile (o.mr < 14)
// runs strided_tail_avx512 and reads only its own rows.
// A streams from L3 or memory here, where the tile's first loads stalled (perf: most of the kernel's time on the
// first k-step). So each k block also prefetches the same 32 bytes of the next tile's 14 rows (14·lda floats on),
// two rows per k-step, spread out so they never wait for line-fill buffers as a burst did (16384×32×32 at 1
// thread: 0.72-0.76x -> 0.83-0.89x MKL; one tile ahead beat two and four).
#define SFT_PF(addr) "prefetcht0 " addr "\n\t"
#define SFT_SKSTEP_PF(kk, r0, r1) SFT_SKSTEP(kk) SFT_PF(r0) SFT_PF(r1)
// k may be any count: after the 8-step blocks, its last k % 8 steps run one at a time (B's rows are contiguous;
// a conv's receptive field of 27 floats, conv2d/rows.cpp, is one such A row).
__attribute__((target("avx512f,avx512vl,avx512dq,fma,prfchw"))) void ukr_avx512_14x32_strided(
    int64_t k, const float* a, int64_t lda, const float* b, const KOut& o) {
  if (o.mr < kAvx512MR) return strided_tail_avx512(k, a, lda, b, o);
  alignas(64) float tile[kAvx512MR * kAvx512NR];
  prefetch_c(o);
  prefetch_res(o);
  const TileDst d = tile_dst(o, tile);
  int64_t kb = k / KU, kt = k % KU;
  int64_t l1 = lda * 4, l3 = 3 * l1, l5 = 5 * l1;
  const float* a7 = a + 7 * lda;
  const float* pa = a + kAvx512MR * lda;
  const float* pa7 = pa + 7 * lda;
  asm volatile(
      SFT_KLOOP(SFT_SKSTEP_PF(0, "(%[pa])", "(%[pa],%[l1])") SFT_SKSTEP_PF(1, "(%[pa],%[l1],2)", "(%[pa],%[l3])")
                SFT_SKSTEP_PF(2, "(%[pa],%[l1],4)", "(%[pa],%[l5])") SFT_SKSTEP_PF(3, "(%[pa],%[l3],2)", "(%[pa7])")
                SFT_SKSTEP_PF(4, "(%[pa7],%[l1])", "(%[pa7],%[l1],2)")
                SFT_SKSTEP_PF(5, "(%[pa7],%[l3])", "(%[pa7],%[l1],4)")
                SFT_SKSTEP_PF(6, "(%[pa7],%[l5])", "(%[pa7],%[l3],2)") SFT_SKSTEP(7),
                "add $32, %[a]\n\t"
                "add $32, %[a7]\n\t"
                "add $32, %[pa]\n\t"
                "add $32, %[pa7]\n\t",
                "test %[kt], %[kt]\n\t"
                "jle 5f\n"
                "6:\n\t"
                SFT_SKSTEP(0)
                "add $4, %[a]\n\t"
                "add $4, %[a7]\n\t"
                "add $128, %[b]\n\t"
                "dec %[kt]\n\t"
                "jnz 6b\n"
                "5:\n\t")
      : [a] "+r"(a), [a7] "+r"(a7), [b] "+r"(b), [kb] "+r"(kb), [kt] "+r"(kt), [pa] "+r"(pa), [pa7] "+r"(pa7),
        [l1] "+r"(l1), [l3] "+r"(l3), [l5] "+r"(l5)
      : [dst] "m"(d.dst), [pitch] "m"(d.pitch), [nt] "m"(d.nt), [bias] "m"(d.bias), [act] "m"(d.act), [slope] "m"(d.slope), [acc] "m"(d.acc)
      : "cc", "memory", SFT_ZMM_CLOBBERS);
  if (!d.plain) epilogue_avx512<kAvx512MR, kAvx512NR / 16>(tile, o);
}
// The strided kernel over several taps of a padded input (a stride-1 conv read in place, see conv2d/taps.cpp):
// for each tap the A pointers restart at a + toff[t] while B runs on; the accumulators stay in registers
// across taps. Each tap is kb blocks of 8 k-steps and then kt single steps. A plain tile for `out` (see
// tile_dst) is stored there with its epilogue in registers (true is returned); otherwise the raw sums go to
// `tile`. ntaps >= 1. Fewer than 14 rows run the tail kernel tap by tap and read only their own rows.
__attribute__((target("avx512f,avx512vl,avx512dq,fma,prfchw"))) bool ukr_avx512_14x32_taps(
    int64_t kb, int64_t kt, int64_t ntaps, const int64_t* toff, const float* a, int64_t lda, const float* b,
    float* tile, int rows, const KOut* out) {
  const int64_t tk = kb * KU + kt;  // k-steps per tap
  if (rows < kAvx512MR) {
    for (int64_t t = 0; t < ntaps; ++t)
      strided_tail_rows(rows, tk, reinterpret_cast<const float*>(reinterpret_cast<const char*>(a) + toff[t]), lda,
                        b + t * tk * kAvx512NR, tile, t > 0);
    return false;
  }
  if (out) {
    prefetch_c(*out);
    prefetch_res(*out);
  }
  const TileDst d = out ? tile_dst(*out, tile) : TileDst{tile, kAvx512NR * 4, 0, nullptr, kActNone, 0.f, 0, false};
  int64_t l1 = lda * 4, l3 = 3 * l1, l5 = 5 * l1;
  const float *ap, *a7;
  int64_t k;
  asm volatile(
      SFT_ZERO_ALL
      "3:\n\t"
      "mov (%[toff]), %[a]\n\t"
      "add %[base], %[a]\n\t"
      "lea (%[a],%[l1],8), %[a7]\n\t"
      "sub %[l1], %[a7]\n\t"
      "mov %[kb], %[k]\n\t"
      "test %[k], %[k]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n"
      "1:\n\t"
      SFT_SKSTEP(0) SFT_SKSTEP(1) SFT_SKSTEP(2) SFT_SKSTEP(3) SFT_SKSTEP(4) SFT_SKSTEP(5) SFT_SKSTEP(6)
      SFT_SKSTEP(7)
      "add $32, %[a]\n\t"
      "add $32, %[a7]\n\t"
      "add $1024, %[b]\n\t"
      "dec %[k]\n\t"
      "jnz 1b\n"
      "2:\n\t"
      "mov %[kt], %[k]\n\t"
      "test %[k], %[k]\n\t"
      "jz 11f\n"
      "10:\n\t"
      SFT_SKSTEP(0)
      "add $4, %[a]\n\t"
      "add $4, %[a7]\n\t"
      "add $128, %[b]\n\t"
      "dec %[k]\n\t"
      "jnz 10b\n"
      "11:\n\t"
      "add $8, %[toff]\n\t"
      "dec %[ntap]\n\t"
      "jnz 3b\n\t"
      SFT_STORE_TILE
      : [a] "=&r"(ap), [a7] "=&r"(a7), [k] "=&r"(k), [b] "+r"(b), [toff] "+r"(toff), [ntap] "+r"(ntaps),
        [l1] "+r"(l1), [l3] "+r"(l3), [l5] "+r"(l5)
      : [base] "r"(a), [kb] "m"(kb), [kt] "m"(kt), [dst] "m"(d.dst), [pitch] "m"(d.pitch), [nt] "m"(d.nt),
        [bias] "m"(d.bias), [act] "m"(d.act), [slope] "m"(d.slope), [acc] "m"(d.acc)
      : "cc", "memory", SFT_ZMM_CLOBBERS);
  return d.plain;
}

#undef SFT_ROW
#undef SFT_PF
#undef SFT_SKSTEP_PF
#undef SFT_ROWS14
#undef SFT_ST_U
#undef SFT_ST_NT
#undef SFT_ADDC2
#undef SFT_STORE_ROWS
#undef SFT_STORE_TILE
#undef SFT_ADDB
#undef SFT_PAIRS
#undef SFT_RELU
#undef SFT_LEAKY1
#undef SFT_LEAKY
#undef SFT_BLOAD
#undef SFT_PA
#undef SFT_KSTEP
#undef SFT_SKSTEP
#undef SFT_ZERO
#undef SFT_ZERO_ALL
#undef SFT_KLOOP
#undef SFT_ZMM_CLOBBERS

}  // namespace

const UKernel kUKernelAvx512{"avx512",
                             kAvx512MR,
                             kAvx512NR,
                             ukr_avx512_14x32,
                             ukr_avx512_14x32_strided,
                             ukr_avx512_14x32_taps,
                             epilogue_avx512<kAvx512MR, kAvx512NR / 16>};

}  // namespace sft
