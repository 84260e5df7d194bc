// Ceilings to read the kernels' GFLOP/s against: the machine's fp32 FMA peak and what the chosen micro-kernel
// itself sustains with its operands in cache. Both run over torch's threads.
#pragma once

#include <cstdint>

namespace sft {

// Peak fp32 FMA throughput (GFLOP/s) from `iters` rounds of independent FMA chains per thread; 0 on the generic ISA.
double fma_peak_gflops(int64_t iters);
// The micro-kernel alone (GFLOP/s) on one packed A micro-panel and one B panel of depth k, `iters` calls per thread.
double ukernel_ceiling_gflops(int64_t k, int64_t iters);

}  // namespace sft
