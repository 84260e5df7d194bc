// The portable micro-kernel (kGenericMR × kGenericNR, config.h) in plain C++: the compiler vectorizes the j loop
// with whatever the baseline ISA offers.
#include "cpu/engine/ukernel.h"

namespace sft {
namespace {

template <int MR, int NR>
void ukr_generic(int64_t kb, const float* a, const float* b, const KOut& o) {
  float acc[MR][NR] = {};
  for (int64_t t = 0; t < kb; ++t) {
    for (int kk = 0; kk < KU; ++kk)
      for (int i = 0; i < MR; ++i) {
        const float av = a[i * KU + kk];
        for (int j = 0; j < NR; ++j) acc[i][j] += av * b[kk * NR + j];
      }
    a += MR * KU;
    b += KU * NR;
  }
  epilogue_scalar(&acc[0][0], NR, o);
}

}  // namespace

const UKernel kUKernelGeneric{"generic", kGenericMR, kGenericNR, ukr_generic<kGenericMR, kGenericNR>};

}  // namespace sft
