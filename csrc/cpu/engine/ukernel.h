// The micro-kernel interface: an MR×NR register tile of C = A·B from packed (or in-place) A and packed B, stored
// with the fused epilogue, one implementation per ISA (ukernel_avx512.cpp, ukernel_avx2.cpp, ukernel_generic.cpp),
// the one for this CPU chosen at run time (ukernel.cpp) so one build runs on any x86-64.
//
// Families. A family fixes what the packed panels hold and what the kernel sums in; UKernelOf<Family> is the
// descriptor of one ISA's kernels of that family. Only the float family exists. An int8 family slots in beside
// it without changing it:
//   struct I8Family { using a_type = uint8_t; using b_type = int8_t; using acc_type = int32_t;
//                     static constexpr int ku = 4; };   // VNNI's vpdpbusd sums 4 u8·s8 products per int32 lane
//   using UKernelI8 = UKernelOf<I8Family>;
// with its kernels in ukernel_i8_<isa>.cpp (tables declared below next to the float ones), ukernel_i8() in
// ukernel.cpp choosing among them with cpu_has() (isa.h, which learns "avx512vnni"), its MR/NR and blocking in
// config.h, and per-output-channel dequantization scales added to KOut, applied to the int32 sums before the
// float epilogue. The driver and packers (gemm.h, pack.h) are written for float; they would take the family as a
// template parameter.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "cpu/engine/config.h"

namespace sft {

// The activation codes (sft_kernels/runtime/checks.py: ACTIVATIONS). SiLU (EfficientNet, YOLO), hardswish
// (MobileNetV3) and GELU (ConvNeXt; erf or tanh form) are computed by act_vec.h in the vector stores.
enum Act : int {
  kActNone = 0, kActRelu = 1, kActLeaky = 2, kActRelu6 = 3, kActSilu = 4, kActHardswish = 5, kActGelu = 6,
  kActGeluTanh = 7
};
constexpr float kRelu6Max = 6.f;  // relu6 = min(max(x, 0), 6) (MobileNet's activation)

// Activation with PyTorch's NaN semantics (NaN stays NaN: every comparison with it is false).
inline float activate(float v, int act, float slope) {
  if (act == kActRelu) return v < 0.f ? 0.f : v;
  if (act == kActLeaky) return v < 0.f ? v * slope : v;
  if (act == kActRelu6) return v < 0.f ? 0.f : (v > kRelu6Max ? kRelu6Max : v);
  if (act == kActSilu) return v / (1.f + std::exp(-v));
  if (act == kActHardswish) return v * (v + 3.f < 0.f ? 0.f : (v + 3.f > 6.f ? 6.f : v + 3.f)) / 6.f;
  if (act == kActGelu) return 0.5f * v * (1.f + std::erf(v * 0.70710678118654752f));
  if (act == kActGeluTanh) return 0.5f * v * (1.f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return v;
}

// Where a micro-kernel writes its tile: rows [0, mr) × cols [0, nr) of C at c + i*ldc + j.
//   accumulate: C += acc (else C = acc); last: then add bias[j], activate, add res[i*ldres + j].
struct KOut {
  float* c;
  int64_t ldc;
  const float* res;
  int64_t ldres;
  const float* bias;
  int act;
  float slope;
  bool accumulate, last;
  int mr, nr;
  // Fetch the tile's own C rows for writing before the k loop (deep k loops only: short ones cannot hide
  // the misses).
  bool prefetch = false;
  // Write C with non-temporal stores (one-pass tiles of an output too big for cache; see gemm_driver).
  bool stream = false;
};

// The float family: fp32 panels, fp32 sums, KU k-steps per packed group.
struct F32Family {
  using a_type = float;
  using b_type = float;
  using acc_type = float;
  static constexpr int ku = KU;
};

template <class Family>
struct UKernelOf {
  using A = typename Family::a_type;
  using B = typename Family::b_type;
  using Acc = typename Family::acc_type;
  // acc[MR][NR] = sum_k A[i][k] B[k][j] over kb blocks of ku k-steps, then the KOut epilogue.
  using Fn = void (*)(int64_t kb, const A* a, const B* b, const KOut& out);
  // The same with A unpacked: rows [0, out.mr) at a + i·lda (lda in elements), k-steps contiguous, any number k
  // of them (B rows past k are never read).
  using StridedFn = void (*)(int64_t k, const A* a, int64_t lda, const B* b, const KOut& out);
  // A conv tile read in place from a padded input, for every tap: tap t's MR rows are at a + toff[t] bytes +
  // i·lda elements, kb blocks of ku k-steps then kt single ones; B runs through the taps' k-steps in order. Rows
  // [0, rows ≤ MR) are computed. Given `out`, a tile it can store whole (MR rows, NR columns, no residual, not
  // accumulating) is written there with its epilogue and true is returned; otherwise the raw accumulators go to
  // tile (row pitch NR) and the caller stores them with the ISA's epilogue, possibly in pieces.
  using TapsFn = bool (*)(int64_t kb, int64_t kt, int64_t ntaps, const int64_t* toff, const A* a, int64_t lda,
                          const B* b, Acc* tile, int rows, const KOut* out);
  // Writes tile rows [0, out.mr) (row pitch NR) to out with the KOut epilogue.
  using EpilogueFn = void (*)(const Acc* tile, const KOut& out);

  const char* isa;
  int mr, nr;
  Fn fn;
  StridedFn fn_strided = nullptr;  // null: this ISA always packs A
  TapsFn fn_taps = nullptr;        // null: convs pack A (implicit GEMM) instead
  EpilogueFn epilogue = nullptr;
};

using UKernel = UKernelOf<F32Family>;

// The float kernels of each ISA (ukernel_<isa>.cpp), constant-initialized.
extern const UKernel kUKernelAvx512;
extern const UKernel kUKernelAvx2;
extern const UKernel kUKernelGeneric;

// The micro-kernel for this CPU, or the one forced by SFT_KERNELS_ISA=avx512|avx2|generic (ukernel.cpp).
const UKernel& ukernel();
const UKernel& ukernel_for(const std::string& isa);  // throws if this CPU cannot run it

// The KOut epilogue in plain C++ over a tile of row pitch ld (the AVX2 and portable kernels; inlined into each,
// where the compiler vectorizes the j loop for the caller's ISA).
inline void epilogue_scalar(const float* tile, int ld, const KOut& o) {
  for (int i = 0; i < o.mr; ++i) {
    float* __restrict c = o.c + i * o.ldc;
    const float* __restrict t = tile + i * ld;
    const float* r = o.res ? o.res + i * o.ldres : nullptr;
    for (int j = 0; j < o.nr; ++j) {
      float x = o.accumulate ? c[j] + t[j] : t[j];
      if (o.last) {
        if (o.bias) x += o.bias[j];
        x = activate(x, o.act, o.slope);
        if (r) x += r[j];
      }
      c[j] = x;
    }
  }
}

}  // namespace sft
