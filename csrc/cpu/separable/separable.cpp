// Fused depthwise-separable conv. Per chunk of output rows, the depthwise outputs of its pixels (in L1) are
// computed into a buffer, mid activation applied, and the pointwise conv runs on that buffer as the A operand of
// the GEMM micro-kernel (its strided variant reads the rows in place) against the packed 1×1 weights, with bias,
// activation and residual fused into the store. The depthwise map never goes to memory: PyTorch's two convs write
// it and read it back (C·m·H·W·8 bytes per image). With a PixelShuffle(r), tiles run along one output row and the
// store writes a sub-pixel's channels r pixels apart in the shuffled output (and reads the residual there).
#include "cpu/separable/separable.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/paths.h"
#include "cpu/separable/chunks.h"
#include "cpu/engine/gemm.h"
#include "cpu/engine/pack.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"

namespace sft {


at::Tensor separable_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& dw_weight,
                                const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                const c10::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t mid_activation,
                                int64_t activation, double negative_slope,
                                const c10::optional<at::Tensor>& residual, int64_t pixel_shuffle) {
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
  const int64_t r = pixel_shuffle, Cs = K / std::max<int64_t>(r * r, 1);
  TORCH_CHECK(r >= 1 && K % (r * r) == 0, "sft_cpu::separable_conv2d: pixel_shuffle must be >= 1 and r² divide K");
  const UKernel& uk = ukernel();
  const int MR = uk.mr, NR = uk.nr;
  if (r > 1 && Cs % NR != 0) {  // a panel would span two sub-pixels: the conv, then the shuffle, then the residual
    const at::Tensor y = separable_conv2d_cpu(x_in, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation,
                                              mid_activation, activation, negative_slope, c10::nullopt, 1);
    const at::Tensor t = shuffle_sub_pixels(y, r);
    if (residual.has_value()) {
      TORCH_CHECK(residual->sizes() == t.sizes(), "sft_cpu::separable_conv2d: residual must be shaped like the output");
      t.add_(*residual);
    }
    return t;
  }
  // Unit channel stride, as the depthwise vectors read it (an NCHW input is laid out once, by the blocked
  // transpose; the outputs of a converted model are channels_last already).
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : to_channels_last_cpu(x_in);
  // From the reuse pool: a fresh multi-MB output is page-faulted in on every call (see buffer_pool.h).
  at::Tensor out = pooled_empty({N, Cs, P * r, Q * r}, x.options(), at::MemoryFormat::ChannelsLast);
  if (N == 0 || K == 0) return out;
  at::Tensor res = residual.has_value() ? residual->contiguous(at::MemoryFormat::ChannelsLast) : at::Tensor();
  if (res.defined())
    TORCH_CHECK(res.sizes() == out.sizes(), "sft_cpu::separable_conv2d: residual must be shaped like the output");

  const at::Tensor wt = depthwise_weight_taps(dw_weight.contiguous());
  const at::Tensor dwb = dw_bias.has_value() ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor pwb = pw_bias.has_value() ? pw_bias->contiguous() : at::Tensor();
  const at::Tensor bp = conv_weight_panels(pw_weight.contiguous(), 1, uk);  // [K/NR][round_up(Cm, 8)][NR]
  const int64_t Kpad = round_up(Cm, KU);
  const float* bpp = bp.data_ptr<float>();
  // Tiles run over a chunk's pixels flattened row-major, so one tile may end one output row and start the next:
  // that needs one pixel pitch across rows, which out has (channels_last from the pool) and res may lack. (With a
  // shuffle, tiles stay in one row, but a row's offset still assumes that pitch.)
  const int64_t Qo = Q * r;  // the output's width
  const auto flat = [Qo](const at::Tensor& t) { return Qo == 1 || t.stride(2) == Qo * t.stride(3); };
  if (res.defined() && !flat(res)) {
    at::Tensor dense = pooled_empty(res.sizes(), res.options(), at::MemoryFormat::ChannelsLast);
    dense.copy_(res);
    res = dense;
  }
  const auto pitch = [Qo](const at::Tensor& t) { return Qo == 1 ? t.stride(2) : t.stride(3); };
  const int64_t os0 = out.stride(0), ops = pitch(out);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rps = rp ? pitch(res) : 0;
  const ConvOut co{out.data_ptr<float>(), rp, pwb.defined() ? pwb.data_ptr<float>() : nullptr,
                   static_cast<int>(activation), static_cast<float>(negative_slope)};
  const int64_t xs0 = x.stride(0), ld = round_up(Cm, 16);
  const DepthwiseRows g = depthwise_rows_setup(x, dw_weight, wt, dwb.defined() ? dwb.data_ptr<float>() : nullptr,
                                               stride, padding, dilation, static_cast<int>(mid_activation),
                                               static_cast<float>(negative_slope),
                                               std::strcmp(uk.isa, "avx512") == 0);  // the set SFT_KERNELS_ISA chose

  // Work items: chunks of whole output rows of one image (chunks.h). A chunk's depthwise outputs (its pixels ×
  // C·m floats) are computed into a buffer first, then the pointwise GEMM runs over them KC-deep slice by slice,
  // panel by panel, tile by tile, so each B slice (KC × NR floats) stays in L1 across the chunk's tiles.
  const RowChunks plan = row_chunks(N, P, Q, ld, MR, at::get_num_threads());
  const int64_t chunks_per_image = plan.per_image, rb = plan.rows;
  const int64_t kc_max = blocking(uk).kc, KC = balanced_kc(Cm, kc_max);
  // A big output of a shallow pointwise conv goes around the cache, as in the GEMM driver (config.h).
  const bool stream = Cm <= kc_max && Cm <= kStreamMaxK && N * K * P * Q >= kStreamMinFloats;

  at::parallel_for(0, N * chunks_per_image, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> dbuf(static_cast<size_t>(round_up(rb * Q, MR) * ld) + 16);
    float* d = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(dbuf.data()) + 63) & ~uintptr_t(63));
    std::vector<float> a(uk.fn_strided ? 0 : static_cast<size_t>(round_up(KC, KU) * MR));
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      // Chunk i of an image: rows [i·P/c, (i+1)·P/c), sizes within one row of each other.
      const int64_t n = chunk / chunks_per_image, i = chunk % chunks_per_image;
      const int64_t p0 = i * P / chunks_per_image, M = ((i + 1) * P / chunks_per_image - p0) * Q;  // M: its pixels
      const float* xn = x.data_ptr<float>() + n * xs0;
      for (int64_t p = p0; p < p0 + M / Q; ++p)
        for (int64_t q0 = 0; q0 < Q; q0 += MR)
          depthwise_rows(g, xn, p, q0, static_cast<int>(std::min<int64_t>(MR, Q - q0)), d + ((p - p0) * Q + q0) * ld,
                         ld, nullptr, 0);
      const int64_t obase = n * os0 + p0 * Q * ops, rbase = n * rs0 + p0 * Q * rps;
      // One tile of `rows` buffer rows from m0, output channels j..: its store at pixel pitch ops / rps from the
      // given offsets.
      auto run_tile = [&](int64_t k0, int64_t kc, int64_t j, const float* bj, int64_t m0, int rows, int64_t ooff,
                          int64_t opitch, int64_t roff, int64_t rpitch) {
        KOut ko = co.tile(ooff, opitch, roff, rpitch, j, rows, static_cast<int>(std::min<int64_t>(NR, K - j)));
        ko.accumulate = k0 > 0;
        ko.last = k0 + kc >= Cm;
        ko.stream = stream;
        if (uk.fn_strided) {
          uk.fn_strided(kc, d + m0 * ld + k0, ld, bj, ko);
        } else {  // kernels without a strided variant take A packed: one MR-row micro-panel of the buffer
          std::fill(a.begin(), a.end(), 0.f);
          for (int i = 0; i < rows; ++i) pack_a_run(a.data(), MR, i, 0, d + (m0 + i) * ld + k0, kc, 1);
          uk.fn(round_up(kc, KU) / KU, a.data(), bj, ko);
        }
      };
      for (int64_t k0 = 0; k0 < Cm; k0 += KC) {
        const int64_t kc = std::min(KC, Cm - k0);
        for (int64_t j = 0; j < K; j += NR) {
          const float* bj = bpp + j / NR * Kpad * NR + k0 * NR;
          if (r == 1) {
            for (int64_t m0 = 0; m0 < M; m0 += MR)
              run_tile(k0, kc, j, bj, m0, static_cast<int>(std::min<int64_t>(MR, M - m0)), obase + m0 * ops + j, ops,
                       rbase + m0 * rps + j, rps);
            continue;
          }
          // Panel j lies in sub-pixel sp = (i, jj) at channel c: output pixel (p, q) goes to (p·r + i, q·r + jj), so
          // along one output row its pixels are r apart.
          const int64_t sp = j / Cs, c = j % Cs, i = sp / r, jj = sp % r;
          for (int64_t p = p0; p < p0 + M / Q; ++p)
            for (int64_t q0 = 0; q0 < Q; q0 += MR) {
              const int64_t at = (p * r + i) * Q * r + q0 * r + jj;  // shuffled pixel of (p, q0)
              run_tile(k0, kc, j, bj, (p - p0) * Q + q0, static_cast<int>(std::min<int64_t>(MR, Q - q0)),
                       n * os0 + at * ops + c, r * ops, n * rs0 + at * rps + c, r * rps);
            }
        }
      }
    }
    if (stream) store_fence();  // non-temporal stores are weakly ordered: drain them before the join
  });
  return out;
}

}  // namespace sft
