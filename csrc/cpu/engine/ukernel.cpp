// The choice of micro-kernel: the best this CPU runs, or the one SFT_KERNELS_ISA names.
#include "cpu/engine/ukernel.h"

#include <cstdlib>
#include <stdexcept>

#include "cpu/engine/isa.h"

namespace sft {

const UKernel& ukernel_for(const std::string& isa) {
  if (!cpu_has(isa)) throw std::runtime_error("this CPU cannot run the '" + isa + "' micro-kernel");
  if (isa == "avx512") return kUKernelAvx512;
  if (isa == "avx2") return kUKernelAvx2;
  return kUKernelGeneric;
}

const UKernel& ukernel() {
  static const UKernel* chosen = [] {
    const char* env = std::getenv("SFT_KERNELS_ISA");
    if (env && *env) {
      const std::string isa(env);
      if (isa != "avx512" && isa != "avx2" && isa != "generic")
        throw std::runtime_error("SFT_KERNELS_ISA must be avx512, avx2 or generic, got '" + isa + "'");
      return &ukernel_for(isa);
    }
    if (cpu_has("avx512")) return &kUKernelAvx512;
    if (cpu_has("avx2")) return &kUKernelAvx2;
    return &kUKernelGeneric;
  }();
  return *chosen;
}

}  // namespace sft
