// What this CPU can run, asked of the CPU itself (cpuid through GCC's builtins), so one build runs on any x86-64.
#pragma once

#include <string>

namespace sft {

// Whether this CPU runs the "avx512" (F, DQ, VL), "avx2" (with FMA) or "generic" (always) micro-kernels.
bool cpu_has(const std::string& isa);

}  // namespace sft
