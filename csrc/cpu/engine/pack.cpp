#include "cpu/engine/pack.h"

namespace sft {

typedef float v8u __attribute__((vector_size(32), aligned(4)));  // unaligned 8-float vector

__attribute__((target_clones("avx2", "default"))) void copy_chunks8(float* d, int64_t dstep, const float* s,
                                                                   int64_t n) {
  for (int64_t j = 0; j < n; ++j) *reinterpret_cast<v8u*>(d + j * dstep) = *reinterpret_cast<const v8u*>(s + 8 * j);
}

void pack_b(const float* src, int64_t K, int64_t N, int64_t ks, int64_t ns, int nr, float* dst) {
  pack_b_rows(0, K, 0, N, nr, round_up(K, KU) * nr, dst, StridedRow{src, ks, ns});
}

}  // namespace sft
