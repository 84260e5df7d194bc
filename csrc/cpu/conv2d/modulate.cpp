// SFT modulation of conv inputs, applied while they are packed or copied: dst = x·(scale + 1) + shift.
#include "cpu/conv2d/paths.h"

namespace sft {

__attribute__((target_clones("avx512f", "avx2", "default"))) void modulate_run(
    float* __restrict dst, const float* __restrict x, const float* __restrict scale, const float* __restrict shift,
    int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] = x[c] * (scale[c] + 1.f) + shift[c];
}

}  // namespace sft
