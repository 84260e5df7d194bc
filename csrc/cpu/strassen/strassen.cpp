// sft_cpu::strassen_abc — one level of Strassen's algorithm with every addition fused into the GEMM engine
// ("ABC Strassen", Huang, Smith, Henry & van de Geijn, SC16): each of the 7 products
//     M = (A_x ± A_y)(B_z ± B_w)
// packs its A operand as the sum of two quadrants while packing the A micro-panels, packs its B operand as the
// sum while packing each B block, and adds ±M into its one or two C quadrants in the tile store. No quadrant
// sum or product is ever written to memory; the only extra traffic is C being read and written by up to 4
// products. Classical Strassen (18 additions, each a fused term) rather than Winograd's 15, which reuse
// intermediate sums that would have to be stored.
#include "cpu/strassen/strassen.h"

#include <ATen/Parallel.h>

#include <vector>

#include "cpu/engine/gemm.h"

namespace sft {
namespace {

struct Term {  // sign · block, or nothing when p is null
  const float* p;
  float s;
};

// d[j] = sx·x[j] + sy·y[j] (y may be null), vectorized for the CPU at hand: the quadrant sums of both operands.
__attribute__((target_clones("avx512f", "avx2", "default"))) void sum_run(float* __restrict d,
                                                                         const float* __restrict x, float sx,
                                                                         const float* __restrict y, float sy,
                                                                         int64_t n) {
  if (y)
    for (int64_t j = 0; j < n; ++j) d[j] = sx * x[j] + sy * y[j];
  else
    for (int64_t j = 0; j < n; ++j) d[j] = sx * x[j];
}

// A pack_b_rows row functor for the B operand s0·X + s1·Y (row stride ld, unit column stride).
struct SumRow {
  Term x, y;
  int64_t ld;
  void operator()(int64_t k, int64_t j0, int64_t w, float* d) const {
    sum_run(d, x.p + k * ld + j0, x.s, y.p ? y.p + k * ld + j0 : nullptr, y.s, w);
  }
};

// d[j] += s·x[j]: a staged product added into a C quadrant row.
__attribute__((target_clones("avx512f", "avx2", "default"))) void axpy_row(float* __restrict d,
                                                                          const float* __restrict x, float s,
                                                                          int64_t n) {
  for (int64_t j = 0; j < n; ++j) d[j] += s * x[j];
}

}  // namespace

at::Tensor strassen_abc_cpu(const at::Tensor& a_in, const at::Tensor& b_in) {
  TORCH_CHECK(a_in.dim() == 2 && b_in.dim() == 2 && a_in.size(1) == b_in.size(0),
              "sft_cpu::strassen_abc: expects (M, K) @ (K, N)");
  TORCH_CHECK(a_in.scalar_type() == at::kFloat && b_in.scalar_type() == at::kFloat,
              "sft_cpu::strassen_abc: float32 only");
  const int64_t M = a_in.size(0), K = a_in.size(1), N = b_in.size(1);
  TORCH_CHECK(M % 2 == 0 && K % 2 == 0 && N % 2 == 0 && M > 0 && K > 0 && N > 0,
              "sft_cpu::strassen_abc: even, non-zero sizes only (the Python layer peels odd ones)");
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor c = at::zeros({M, N}, a.options());
  const int64_t m = M / 2, k = K / 2, n = N / 2;
  const float* A = a.data_ptr<float>();
  const float* B = b.data_ptr<float>();
  float* C = c.data_ptr<float>();
  const float *A11 = A, *A12 = A + k, *A21 = A + m * K, *A22 = A + m * K + k;
  const float *B11 = B, *B12 = B + n, *B21 = B + k * N, *B22 = B + k * N + n;
  float *C11 = C, *C12 = C + n, *C21 = C + m * N, *C22 = C + m * N + n;
  const Term none{nullptr, 0.f};
  struct Product {
    Term a0, a1, b0, b1;
    float* c0;
    float s0;
    float* c1;
    float s1;
  };
  const Product products[7] = {
      {{A11, 1}, {A22, 1}, {B11, 1}, {B22, 1}, C11, 1, C22, 1},     // M1 = (A11 + A22)(B11 + B22)
      {{A21, 1}, {A22, 1}, {B11, 1}, none, C21, 1, C22, -1},        // M2 = (A21 + A22) B11
      {{A11, 1}, none, {B12, 1}, {B22, -1}, C12, 1, C22, 1},        // M3 = A11 (B12 - B22)
      {{A22, 1}, none, {B21, 1}, {B11, -1}, C11, 1, C21, 1},        // M4 = A22 (B21 - B11)
      {{A11, 1}, {A12, 1}, {B22, 1}, none, C11, -1, C12, 1},        // M5 = (A11 + A12) B22
      {{A21, 1}, {A11, -1}, {B11, 1}, {B12, 1}, C22, 1, nullptr, 0},  // M6 = (A21 - A11)(B11 + B12)
      {{A12, 1}, {A22, -1}, {B21, 1}, {B22, 1}, C11, 1, nullptr, 0},  // M7 = (A12 - A22)(B21 + B22)
  };
  const UKernel& uk = ukernel();
  // A k that takes the GEMM several K passes (gemm_k_passes: k > 2.5·KC) runs each product at the engine's
  // blocking into a staging buffer and adds ±M to its quadrants in one vector pass: one pass of k = 2048 with the
  // ±C updates in the tile store (the fused form) kept a 256 KB B micro-panel per tile and ran 0.92-0.97x our
  // GEMM at 4096, and several passes of it re-read C per pass (0.73-0.91x).
  const bool staged = gemm_k_passes(k, blocking(uk).kc) > 1;
  const at::Tensor t = staged ? at::empty({m, n}, a.options()) : at::Tensor();
  float* tp = staged ? t.data_ptr<float>() : nullptr;
  const AffineOut staged_out{tp, n, nullptr, 0, nullptr, kActNone, 0.f};
  for (const Product& pr : products) {
    auto pack_a = [&](int64_t i0, int mr, int64_t k0, int64_t kc, float* dst) {
      thread_local std::vector<float> row;
      row.resize(kc);
      const int64_t kcp = round_up(kc, KU);
      for (int i = 0; i < uk.mr; ++i) {
        if (i >= mr) {
          pack_a_run(dst, uk.mr, i, 0, nullptr, kcp, 1);
          continue;
        }
        const float* x = pr.a0.p + (i0 + i) * K + k0;
        const float* y = pr.a1.p ? pr.a1.p + (i0 + i) * K + k0 : nullptr;
        if (i0 + i + uk.mr < m) {  // the next panel's row slices
          prefetch_run(x + uk.mr * K, kc);
          if (y) prefetch_run(y + uk.mr * K, kc);
        }
        sum_run(row.data(), x, pr.a0.s, y, pr.a1.s, kc);
        pack_a_run(dst, uk.mr, i, 0, row.data(), kc, 1);
        if (kcp > kc) pack_a_run(dst, uk.mr, i, kc, nullptr, kcp - kc, 1);
      }
    };
    const int NR = uk.nr;
    auto store = [&](int64_t i0, int mr, int64_t j0, int nr, const float* tile, bool, bool) {
      for (int q = 0; q < 2; ++q) {
        float* cq = q ? pr.c1 : pr.c0;
        const float s = q ? pr.s1 : pr.s0;
        if (!cq) continue;
        for (int i = 0; i < mr; ++i) {
          float* __restrict dst = cq + (i0 + i) * N + j0;
          const float* __restrict t = tile + i * NR;
          for (int j = 0; j < nr; ++j) dst[j] += s * t[j];
        }
      }
    };
    if (!staged) {  // one K pass: the ±C read-modify-writes happen once per tile, in the store
      gemm_driver(uk, m, n, k, nullptr, pack_a, nullptr, store, round_up(k, KU), SumRow{pr.b0, pr.b1, N});
      continue;
    }
    gemm_driver(uk, m, n, k, nullptr, pack_a, &staged_out, NoTileStore{}, 0, SumRow{pr.b0, pr.b1, N});
    at::parallel_for(0, m, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        axpy_row(pr.c0 + r * N, tp + r * n, pr.s0, n);
        if (pr.c1) axpy_row(pr.c1 + r * N, tp + r * n, pr.s1, n);
      }
    });
  }
  return c;
}

}  // namespace sft
