// The GEMM blocking in force and the driver's out-of-line helpers.
#include "cpu/engine/gemm.h"

#include <immintrin.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace sft {
namespace {
std::mutex g_mu;
Blocking g_override{0, 0, 0};
}  // namespace

void store_fence() { _mm_sfence(); }

Blocking blocking(const UKernel& uk) {
  const bool avx512 = std::strcmp(uk.isa, "avx512") == 0;
  Blocking b = avx512 ? Blocking{kAvx512MCPanels * uk.mr, kAvx512KC, kAvx512NC}
                      : Blocking{kOtherMCPanels * uk.mr, kOtherKC, kOtherNC};
  static const Blocking env = [] {
    Blocking e{0, 0, 0};
    if (const char* s = std::getenv("SFT_KERNELS_GEMM_BLOCKING"); s && *s) {
      long long mc = 0, kc = 0, nc = 0;
      if (std::sscanf(s, "%lld,%lld,%lld", &mc, &kc, &nc) != 3 || mc < 0 || kc < 0 || nc < 0)
        throw std::runtime_error("SFT_KERNELS_GEMM_BLOCKING must be 'MC,KC,NC' (0 keeps a default)");
      e = {mc, kc, nc};
    }
    return e;
  }();
  std::lock_guard<std::mutex> lock(g_mu);
  const Blocking* layers[2] = {&env, &g_override};
  for (const Blocking* o : layers) {
    if (o->mc) b.mc = o->mc;
    if (o->kc) b.kc = o->kc;
    if (o->nc) b.nc = o->nc;
  }
  return b;
}

void set_blocking(int64_t mc, int64_t kc, int64_t nc) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_override = {mc, kc, nc};
}

std::string gemm_config() {
  const UKernel& uk = ukernel();
  const Blocking b = blocking(uk);
  return std::string("isa=") + uk.isa + " MR=" + std::to_string(uk.mr) + " NR=" + std::to_string(uk.nr) +
         " MC=" + std::to_string(b.mc) + " KC=" + std::to_string(b.kc) + " NC=" + std::to_string(b.nc);
}

}  // namespace sft
