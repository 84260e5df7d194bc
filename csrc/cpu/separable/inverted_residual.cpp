// Fused inverted residual (MobileNetV2's block): 1×1 expand conv, depthwise conv, 1×1 projection, in one pass.
// PyTorch (and onnxruntime) write the expanded map, E channels at the input's resolution (6× the input's bytes
// in MobileNetV2), and read it back twice. Here each thread walks its output rows in order and keeps the expanded
// rows they read in a window (a few rows, in its L2): each row is expanded once by the GEMM micro-kernel, the
// depthwise conv reads the window in place, and its outputs go through L1 to the projection's micro-kernel as in
// the fused separable conv (separable.cpp), with bias, activation and residual in the projection's store.
#include "cpu/separable/separable.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/config.h"
#include "cpu/engine/gemm.h"
#include "cpu/engine/pack.h"
#include "cpu/separable/chunks.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"

namespace sft {
namespace {

// C[m][j] (m < M pixels of A at pitch lda, j < N) = act(A·B + bias) + res through the micro-kernel, B packed as
// conv_weight_panels; C and res at pixel pitches ldc and ldr. k sliced by KC, accumulating in C.
void gemm_rows(const UKernel& uk, const float* a, int64_t lda, int64_t M, int64_t kdim, const float* bp, int64_t N,
               const ConvOut& co, int64_t ldc, int64_t ldr, int64_t KC, std::vector<float>& apack, bool stream) {
  const int MR = uk.mr, NR = uk.nr;
  const int64_t Kpad = round_up(kdim, KU);
  for (int64_t k0 = 0; k0 < kdim; k0 += KC) {
    const int64_t kc = std::min(KC, kdim - k0);
    for (int64_t j = 0; j < N; j += NR) {
      const float* bj = bp + j / NR * Kpad * NR + k0 * NR;
      for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, M - m0));
        const int cols = static_cast<int>(std::min<int64_t>(NR, N - j));
        KOut ko = co.tile(m0 * ldc + j, ldc, m0 * ldr + j, ldr, j, rows, cols);
        ko.accumulate = k0 > 0;
        ko.last = k0 + kc >= kdim;
        ko.stream = stream;
        if (uk.fn_strided) {
          uk.fn_strided(kc, a + m0 * lda + k0, lda, bj, ko);
        } else {  // kernels without a strided variant take A packed: one MR-row micro-panel
          apack.assign(static_cast<size_t>(round_up(kc, KU) * MR), 0.f);
          for (int i = 0; i < rows; ++i) pack_a_run(apack.data(), MR, i, 0, a + (m0 + i) * lda + k0, kc, 1);
          uk.fn(round_up(kc, KU) / KU, apack.data(), bj, ko);
        }
      }
    }
  }
}

}  // namespace

at::Tensor inverted_residual_cpu(const at::Tensor& x_in, const at::Tensor& ex_weight,
                                 const c10::optional<at::Tensor>& ex_bias, int64_t ex_activation,
                                 const at::Tensor& dw_weight, const c10::optional<at::Tensor>& dw_bias,
                                 const at::Tensor& pw_weight, const c10::optional<at::Tensor>& pw_bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t mid_activation, int64_t activation, double negative_slope,
                                 const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x_in.dim() == 4 && x_in.scalar_type() == at::kFloat && x_in.device().is_cpu(),
              "sft_cpu::inverted_residual: input must be a 4-D float32 CPU tensor");
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  TORCH_CHECK(ex_weight.dim() == 4 && ex_weight.size(1) == C && ex_weight.size(2) == 1 && ex_weight.size(3) == 1,
              "sft_cpu::inverted_residual: ex_weight must be (E, ", C, ", 1, 1)");
  const int64_t E = ex_weight.size(0);
  TORCH_CHECK(dw_weight.dim() == 4 && dw_weight.size(1) == 1 && E > 0 && dw_weight.size(0) % E == 0,
              "sft_cpu::inverted_residual: dw_weight must be (E·m, 1, R, S) with E = ", E);
  const int64_t Cm = dw_weight.size(0), R = dw_weight.size(2), S = dw_weight.size(3);
  TORCH_CHECK(pw_weight.dim() == 4 && pw_weight.size(1) == Cm && pw_weight.size(2) == 1 && pw_weight.size(3) == 1,
              "sft_cpu::inverted_residual: pw_weight must be (K, ", Cm, ", 1, 1)");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              "sft_cpu::inverted_residual: stride, padding and dilation take two values");
  const int64_t K = pw_weight.size(0);
  const int64_t sh = stride[0], ph = padding[0], dh = dilation[0];
  const int64_t P = (H + 2 * ph - dh * (R - 1) - 1) / sh + 1;
  const int64_t Q = (W + 2 * padding[1] - dilation[1] * (S - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::inverted_residual: the input is too small for the kernel");
  const UKernel& uk = ukernel();
  const int MR = uk.mr;
  // Dense channels_last rows, so that a run of rows is one run of pixels at pitch C (the expand GEMM's A).
  at::Tensor x = x_in.stride(1) == 1 ? x_in : to_channels_last_cpu(x_in);
  if (!(x.stride(3) == C && x.stride(2) == W * C)) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor out = pooled_empty({N, K, P, Q}, x.options(), at::MemoryFormat::ChannelsLast);
  if (N == 0 || K == 0) return out;
  at::Tensor res = residual.has_value() ? residual->contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  if (res.defined())
    TORCH_CHECK(res.sizes() == out.sizes(), "sft_cpu::inverted_residual: residual must be shaped like the output");
  if (res.defined() && Q > 1 && res.stride(2) != Q * res.stride(3)) {  // tiles span rows: one pixel pitch
    at::Tensor dense = pooled_empty(res.sizes(), res.options(), at::MemoryFormat::ChannelsLast);
    dense.copy_(res);
    res = dense;
  }

  const at::Tensor exb = ex_bias.has_value() ? ex_bias->contiguous() : at::Tensor();
  const at::Tensor dwb = dw_bias.has_value() ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor pwb = pw_bias.has_value() ? pw_bias->contiguous() : at::Tensor();
  TORCH_CHECK((!exb.defined() || exb.numel() == E) && (!dwb.defined() || dwb.numel() == Cm) &&
                  (!pwb.defined() || pwb.numel() == K),
              "sft_cpu::inverted_residual: a bias does not match its conv's output channels");
  const at::Tensor ep = conv_weight_panels(ex_weight.contiguous(), 1, uk);  // cached per weight
  const at::Tensor pp = conv_weight_panels(pw_weight.contiguous(), 1, uk);
  const at::Tensor wt = depthwise_weight_taps(dw_weight.contiguous());

  // The expanded rows' layout in a window: pixel pitch LE (16-float aligned), row pitch W·LE.
  const int64_t LE = round_up(E, 16), row_floats = W * LE;
  const DepthwiseRows g = depthwise_rows_setup(MapDims{E, H, W, 1, row_floats, LE}, dw_weight, wt,
                                               dwb.defined() ? dwb.data_ptr<float>() : nullptr, stride, padding,
                                               dilation, static_cast<int>(mid_activation),
                                               static_cast<float>(negative_slope), std::strcmp(uk.isa, "avx512") == 0);
  const ConvOut ex_out{nullptr, nullptr, exb.defined() ? exb.data_ptr<float>() : nullptr,
                       static_cast<int>(ex_activation), static_cast<float>(negative_slope)};
  const int64_t os0 = out.stride(0), ops = Q == 1 ? out.stride(2) : out.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rps = rp ? (Q == 1 ? res.stride(2) : res.stride(3)) : 0;

  // Chunks of output rows as in the fused separable conv (chunks.h).
  const int64_t ld = round_up(Cm, 16);
  const RowChunks plan = row_chunks(N, P, Q, ld, MR, at::get_num_threads());
  const int64_t chunks_per_image = plan.per_image, rb = plan.rows;
  // Input rows one chunk reads; the window holds a few chunks' worth, so the rows kept for the next chunk (the
  // kernel's overlap) move to its front only now and then.
  const int64_t span = (rb - 1) * sh + (R - 1) * dh + 1;
  const int64_t cap = std::min(H, std::max(span + 2 * rb * sh, kInvertedResidualWindowBytes / (row_floats * 4)));
  const int64_t kc_max = blocking(uk).kc;
  const int64_t ex_KC = balanced_kc(C, kc_max), pw_KC = balanced_kc(Cm, kc_max);
  const bool stream = Cm <= kc_max && Cm <= kStreamMaxK && N * K * P * Q >= kStreamMinFloats;
  const ConvOut co{out.data_ptr<float>(), rp, pwb.defined() ? pwb.data_ptr<float>() : nullptr,
                   static_cast<int>(activation), static_cast<float>(negative_slope)};

  at::parallel_for(0, N * chunks_per_image, 1, [&](int64_t c0, int64_t c1) {
    // Per-thread buffers kept between calls (a fresh zeroed window per call cost a pass over it); only columns
    // [0, Cm) of d and [0, E) of the window are ever read, each after it is written.
    thread_local std::vector<float> dbuf, wbuf, apack;
    const auto aligned = [](std::vector<float>& v, size_t n) {
      if (v.size() < n + 16) v.resize(n + 16);
      return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
    };
    float* d = aligned(dbuf, static_cast<size_t>(round_up(rb * Q, MR) * ld));
    float* win = aligned(wbuf, static_cast<size_t>(cap * row_floats));
    int64_t wn = -1, wlo = 0, whi = 0;  // the window holds expanded rows [wlo, whi) of image wn
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t n = chunk / chunks_per_image, i = chunk % chunks_per_image;
      const int64_t p0 = i * P / chunks_per_image, p1 = (i + 1) * P / chunks_per_image, M = (p1 - p0) * Q;
      const int64_t lo = std::max<int64_t>(0, p0 * sh - ph);
      const int64_t hi = std::min(H, (p1 - 1) * sh - ph + (R - 1) * dh + 1);
      if (wn != n || lo >= whi || lo < wlo) {  // nothing to keep
        wn = n, wlo = whi = lo;
      } else if (hi > wlo + cap) {  // keep [lo, whi): move it to the front
        std::memmove(win, win + (lo - wlo) * row_floats, (whi - lo) * row_floats * sizeof(float));
        wlo = lo;
      }
      if (hi > whi) {  // expand rows [whi, hi) into their window slots
        const float* a = x.data_ptr<float>() + n * x.stride(0) + whi * x.stride(2);
        ConvOut eo = ex_out;
        eo.out = win + (whi - wlo) * row_floats;
        gemm_rows(uk, a, C, (hi - whi) * W, C, ep.data_ptr<float>(), E, eo, LE, 0, ex_KC, apack, false);
        whi = hi;
      }
      // The window as image rows: row h at win + (h − wlo)·row_floats (only rows in [lo, hi) are read).
      const float* xn = win - wlo * row_floats;
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t q0 = 0; q0 < Q; q0 += MR)
          depthwise_rows(g, xn, p, q0, static_cast<int>(std::min<int64_t>(MR, Q - q0)), d + ((p - p0) * Q + q0) * ld,
                         ld, nullptr, 0);
      ConvOut po = co;
      po.out += n * os0 + p0 * Q * ops;
      if (po.res) po.res += n * rs0 + p0 * Q * rps;
      gemm_rows(uk, d, ld, M, Cm, pp.data_ptr<float>(), K, po, ops, rps, pw_KC, apack, stream);
    }
    if (stream) store_fence();  // non-temporal stores are weakly ordered: drain them before the join
  });
  return out;
}

}  // namespace sft
