// Fused depthwise-separable conv. Per output row, the depthwise outputs of its pixels (Q × C·m floats, in L2) are
// computed into a buffer, mid activation applied, and the pointwise conv runs on that buffer as the A operand of
// the GEMM micro-kernel (its strided variant reads the rows in place) against the packed 1×1 weights, with bias,
// activation and residual fused into the store. The depthwise map never goes
// to memory: PyTorch's two convs write it and read it back (C·m·H·W·8 bytes per image).
#include "cpu/separable/separable.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/engine/gemm.h"
#include "cpu/engine/pack.h"
#include "cpu/runtime/buffer_pool.h"

namespace sft {


at::Tensor separable_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& dw_weight,
                                const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                const c10::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t mid_activation,
                                int64_t activation, double negative_slope,
                                const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x_in.dim() == 4 && x_in.scalar_type() == at::kFloat && x_in.device().is_cpu(),
              "sft_cpu::separable_conv2d: input must be a 4-D float32 CPU tensor");
  TORCH_CHECK(dw_weight.dim() == 4 && dw_weight.size(1) == 1 && dw_weight.size(0) % x_in.size(1) == 0,
              "sft_cpu::separable_conv2d: dw_weight must be (C·m, 1, R, S)");
  const int64_t N = x_in.size(0), H = x_in.size(2), W = x_in.size(3);
  const int64_t Cm = dw_weight.size(0), R = dw_weight.size(2), S = dw_weight.size(3);
  TORCH_CHECK(pw_weight.dim() == 4 && pw_weight.size(1) == Cm && pw_weight.size(2) == 1 && pw_weight.size(3) == 1,
              "sft_cpu::separable_conv2d: pw_weight must be (K, ", Cm, ", 1, 1)");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "sft_cpu::separable_conv2d: stride, padding and dilation take two values");
  const int64_t K = pw_weight.size(0);
  const int64_t P = (H + 2 * padding[0] - dilation[0] * (R - 1) - 1) / stride[0] + 1;
  const int64_t Q = (W + 2 * padding[1] - dilation[1] * (S - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::separable_conv2d: the input is too small for the kernel");
  // Unit channel stride, as the depthwise vectors read it (an NCHW input is laid out once; the outputs of a
  // converted model are channels_last already).
  at::Tensor x = x_in;
  if (x.stride(1) != 1) {
    x = pooled_empty(x_in.sizes(), x_in.options(), at::MemoryFormat::ChannelsLast);
    x.copy_(x_in);
  }
  // From the reuse pool: a fresh multi-MB output is page-faulted in on every call (see buffer_pool.h).
  at::Tensor out = pooled_empty({N, K, P, Q}, x.options(), at::MemoryFormat::ChannelsLast);
  if (N == 0 || K == 0) return out;
  const at::Tensor res = residual.has_value() ? residual->contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  if (res.defined())
    TORCH_CHECK(res.sizes() == out.sizes(), "sft_cpu::separable_conv2d: residual must be shaped like the output");

  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const at::Tensor wt = depthwise_weight_taps(dw_weight.contiguous());
  const at::Tensor dwb = dw_bias.has_value() ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor pwb = pw_bias.has_value() ? pw_bias->contiguous() : at::Tensor();
  const at::Tensor bp = conv_weight_panels(pw_weight.contiguous(), 1, uk);  // [K/NR][round_up(Cm, 8)][NR]
  const int64_t Kpad = round_up(Cm, KU);
  const float* bpp = bp.data_ptr<float>();
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  const ConvOut co{out.data_ptr<float>(), rp, pwb.defined() ? pwb.data_ptr<float>() : nullptr,
                   static_cast<int>(activation), static_cast<float>(negative_slope)};
  const int64_t xs0 = x.stride(0), ld = round_up(Cm, 16);
  const DepthwiseRows g = depthwise_rows_setup(x, dw_weight, wt, dwb.defined() ? dwb.data_ptr<float>() : nullptr,
                                               stride, padding, dilation, static_cast<int>(mid_activation),
                                               static_cast<float>(negative_slope),
                                               std::strcmp(uk.isa, "avx512") == 0);  // the set SFT_KERNELS_ISA chose

  // Per output row: the depthwise outputs of the whole row first (Q × C·m floats: ≤ 128 KB for 256 pixels of 128
  // channels, in L2), then the pointwise GEMM panel by panel, so each B panel (C·m × NR floats) stays in L1 across
  // the row's tiles; tile by tile (depthwise 14 pixels, then every panel) cycled all of B through L1 per tile.
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> dbuf(static_cast<size_t>(round_up(Q, MR) * ld) + 16);
    float* d = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(dbuf.data()) + 63) & ~uintptr_t(63));
    std::vector<float> a(uk.fn_strided ? 0 : static_cast<size_t>(Kpad * MR));
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / P, p = row % P;
      const float* xn = x.data_ptr<float>() + n * xs0;
      for (int64_t q0 = 0; q0 < Q; q0 += MR)
        depthwise_rows(g, xn, p, q0, static_cast<int>(std::min<int64_t>(MR, Q - q0)), d + q0 * ld, ld, nullptr, 0);
      for (int64_t j = 0; j < K; j += NR) {
        const float* bj = bpp + j / NR * Kpad * NR;
        for (int64_t q0 = 0; q0 < Q; q0 += MR) {
          const int rows = static_cast<int>(std::min<int64_t>(MR, Q - q0));
          const KOut ko = co.tile(n * os0 + p * os2 + q0 * os3 + j, os3, n * rs0 + p * rs2 + q0 * rs3 + j, rs3, j,
                                  rows, static_cast<int>(std::min<int64_t>(NR, K - j)));
          if (uk.fn_strided) {
            uk.fn_strided(Cm, d + q0 * ld, ld, bj, ko);
          } else {  // kernels without a strided variant take A packed: one MR-row micro-panel of the buffer
            std::fill(a.begin(), a.end(), 0.f);
            for (int i = 0; i < rows; ++i) pack_a_run(a.data(), MR, i, 0, d + (q0 + i) * ld, Cm, 1);
            uk.fn(Kpad / KU, a.data(), bj, ko);
          }
        }
      }
    }
  });
  return out;
}

}  // namespace sft
