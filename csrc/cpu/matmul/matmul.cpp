// sft_cpu::matmul — batched C[b] = A[b] · B[b] for (B, M, K) and (B, K, N) float32 views with any strides
// (stride-0 batch dims from broadcasting need no copy). The driver packs both operands block by block.
#include "cpu/matmul/matmul.h"

#include <ATen/Parallel.h>

#include "cpu/engine/gemm.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {

// 2-D operands are taken as they are, (M, K) @ (K, N) -> (M, N): making batch-of-one views in Python first cost
// more than the view ops themselves (torch.matmul slowed by ~50 us per call on a 0.28 ms GEMM the same way).
at::Tensor matmul_cpu(const at::Tensor& a2, const at::Tensor& b2) {
  const bool flat = a2.dim() == 2 && b2.dim() == 2;
  const at::Tensor a = flat ? a2.unsqueeze(0) : a2, b = flat ? b2.unsqueeze(0) : b2;
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "sft_cpu::matmul: expects (B, M, K) @ (B, K, N) or (M, K) @ (K, N)");
  TORCH_CHECK(a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat, "sft_cpu::matmul: float32 only");
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  at::Tensor c = flat ? pooled_empty({M, N}, a.options()) : pooled_empty({B, M, N}, a.options());
  if (M == 0 || N == 0 || B == 0) return c;
  if (K == 0) return c.zero_();
  const UKernel& uk = ukernel();
  const int64_t nt = at::get_num_threads();
  const float* ap = a.data_ptr<float>();
  const int64_t as1 = a.stride(1), as2 = a.stride(2);
  const bool in_place = as2 == 1 && direct_a_pays(K, as1, uk.mr);  // the same for every batch entry
  for (int64_t bi = 0; bi < B; ++bi) {
    const StridedRow brow{b.data_ptr<float>() + bi * b.stride(0), b.stride(1), b.stride(2)};
    const float* ab = ap + bi * a.stride(0);
    // The same slice of the next panel's row is fetched while this one is copied (prefetch_run).
    auto pack_a = [&](int64_t i0, int mr, int64_t k0, int64_t kc, float* dst) {
      const int64_t kcp = round_up(kc, KU);
      for (int i = 0; i < uk.mr; ++i) {
        const float* src = i < mr ? ab + (i0 + i) * as1 + k0 * as2 : nullptr;
        if (src && as2 == 1 && i0 + i + uk.mr < M) prefetch_run(src + uk.mr * as1, kc);
        pack_a_run(dst, uk.mr, i, 0, src, kc, as2);
        if (kcp > kc) pack_a_run(dst, uk.mr, i, kc, nullptr, kcp - kc, 1);
      }
    };
    // C is row-major: always the micro-kernel's direct store.
    const AffineOut aff{c.data_ptr<float>() + bi * M * N, N, nullptr, 0, nullptr, kActNone, 0.f};
    const DirectA direct{ab, as1};
    if (nt > 1 && N >= M && N >= 2 * uk.nr * nt) {
      // At least as wide as tall: each thread runs the whole GEMM on its own NR-aligned column range, packing
      // its own B blocks and all of A. Splitting rows instead shares each packed B block between the threads,
      // so half of it sits in the other core's L2 and every block ends with a barrier. Interleaved in one
      // process at 2 threads, both call orders (vs MKL): 512³ 0.88-1.00x -> 0.95-1.05x, 1024³ 0.94-0.98x ->
      // 0.98-1.03x, 2048³ 0.95-1.03x -> 0.99-1.10x, 4096³ 0.91-0.95x -> 0.98x, 512x2048x2048 0.88-0.89x ->
      // 0.98-1.01x. Taller ones keep the row split, which reads A once: 16384x256x576 1.05-1.18x against
      // 0.92-1.03x split by columns, 4096x512x2048 1.00-1.01x against 0.92-0.97x.
      at::parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t j0 = round_up(N * t / nt, uk.nr), j1 = t + 1 == nt ? N : round_up(N * (t + 1) / nt, uk.nr);
          const StridedRow bt{brow.src + j0 * brow.ns, brow.ks, brow.ns};
          const AffineOut ct{aff.c + j0, N, nullptr, 0, nullptr, kActNone, 0.f};
          // Inside a parallel region the driver's own parallel loops run on this thread alone.
          gemm_driver(uk, M, j1 - j0, K, nullptr, pack_a, &ct, NoTileStore{}, 0, bt, in_place ? &direct : nullptr);
        }
      });
      continue;
    }
    gemm_driver(uk, M, N, K, nullptr, pack_a, &aff, NoTileStore{}, 0, brow, in_place ? &direct : nullptr);
  }
  return c;
}

}  // namespace sft
