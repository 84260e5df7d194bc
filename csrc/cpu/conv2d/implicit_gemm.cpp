// Implicit-GEMM convolution on the blocked GEMM engine (cpu/engine/gemm.h): any conv.
//
// CUTLASS mapping per group: M = N·P·Q output pixels, N = K/groups output channels, K = R·S·C/groups with
// k ordered (r, s, c) so c is innermost: each A row segment is a contiguous channel run of one input pixel
// (the input is used channels-last; conv2d.cpp repacks NCHW input once per call, a cost counted in benchmarks).
// Padding, stride and dilation are handled while packing A; no im2col buffer is built. The epilogue (bias,
// activation, residual) is applied in the tile store, which writes the output in its own memory format.
#include <ATen/ATen.h>

#include <vector>

#include "cpu/conv2d/paths.h"
#include "cpu/engine/gemm.h"
#include "cpu/runtime/layout.h"
#include "cpu/runtime/weight_cache.h"

namespace sft {

int64_t conv_group_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk) {
  const int64_t Kg = weight.size(0) / groups, KK = weight.size(1) * weight.size(2) * weight.size(3);
  return (Kg + uk.nr - 1) / uk.nr * uk.nr * round_up(KK, KU);
}

at::Tensor conv_weight_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk, bool s_outer) {
  const int64_t K = weight.size(0), Kg = K / groups, KK = weight.size(1) * weight.size(2) * weight.size(3);
  const int64_t group_panels = conv_group_panels(weight, groups, uk);
  return cached_weight_transform(weight, (int64_t(s_outer) << 40) + groups * 64 + uk.nr, [&](const at::Tensor& wc) {
    // (R, S, Cg, K) or (S, R, Cg, K): B rows k = (r, s, c) or (s, r, c)
    const at::Tensor wt = (s_outer ? wc.permute({3, 2, 1, 0}) : wc.permute({2, 3, 1, 0})).contiguous();
    at::Tensor packed = at::empty({groups * group_panels + 16}, wc.options());
    for (int64_t g = 0; g < groups; ++g)
      pack_b(wt.data_ptr<float>() + g * Kg, KK, Kg, K, 1, uk.nr, packed.data_ptr<float>() + g * group_panels);
    return packed;
  });
}

// Channels-last output (and residual) rows take the micro-kernel's direct store, others a strided tile store.
void conv2d_implicit_gemm_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               int64_t groups, int64_t activation, double negative_slope, const at::Tensor& res,
                               at::Tensor& out, const at::Tensor& mscale, const at::Tensor& mshift) {
  const int64_t H = x.size(2), W = x.size(3);
  const int64_t K = weight.size(0), Cg = weight.size(1), R = weight.size(2), S = weight.size(3);
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1], dh = dilation[0], dw = dilation[1];
  const int64_t P = out.size(2), Q = out.size(3);
  const int64_t Kg = K / groups, PQ = P * Q, M = x.size(0) * PQ, KK = R * S * Cg;
  const UKernel& uk = ukernel();
  const float* xp = x.data_ptr<float>();
  const float* msp = mscale.defined() ? mscale.data_ptr<float>() : nullptr;
  const float* mtp = mshift.defined() ? mshift.data_ptr<float>() : nullptr;
  const int64_t xs0 = x.stride(0), xs2 = x.stride(2), xs3 = x.stride(3);
  const int64_t os[4] = {out.stride(0), out.stride(1), out.stride(2), out.stride(3)};
  int64_t rs[4] = {0, 0, 0, 0};
  if (res.defined()) for (int d = 0; d < 4; ++d) rs[d] = res.stride(d);
  const int64_t group_panels = conv_group_panels(weight, groups, uk);
  const at::Tensor bp_all = conv_weight_panels(weight, groups, uk);

  for (int64_t g = 0; g < groups; ++g) {
    const float* bpg = bp_all.data_ptr<float>() + g * group_panels;
    const float* xg = xp + g * Cg;

    // Rows are consecutive output pixels: decode (n, p, q) once per panel and step it, so the hot loop
    // has no divisions; (r, s) likewise steps through the taps.
    const bool merge_taps = groups == 1 && dw == 1 && xs3 == Cg;
    auto pack_a = [&](int64_t i0, int mr, int64_t k0, int64_t kc, float* dst) {
      const int64_t kcp = round_up(kc, KU);
      int64_t n = i0 / PQ, p = (i0 % PQ) / Q, q = i0 % Q;
      const int64_t rs0 = k0 / Cg, r0 = rs0 / S, s0 = rs0 % S, c0 = k0 % Cg;
      for (int i = 0; i < uk.mr; ++i) {
        if (i >= mr) {
          pack_a_run(dst, uk.mr, i, 0, nullptr, kcp, 1);
          continue;
        }
        const int64_t ih0 = p * sh - ph, iw0 = q * sw - pw;
        const float* xn = xg + n * xs0;
        int64_t k = k0, r = r0, sx = s0, c = c0;
        while (k < k0 + kc) {
          const int64_t ih = ih0 + r * dh, iw = iw0 + sx * dw;
          int64_t run = std::min(Cg - c, k0 + kc - k);
          const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
          // The next taps of this kernel row read the next pixels of the same input row: with dense pixels
          // they continue the run (a 4×4 conv on 8 channels: one run of 32 floats instead of four of 8).
          int64_t taps = 1;
          if (inside && merge_taps)
            for (; sx + taps < S && iw + taps < W && k + run < k0 + kc; ++taps) run += std::min(Cg, k0 + kc - k - run);
          const float* src = inside ? xn + ih * xs2 + iw * xs3 + c : nullptr;
          if (src && msp) {  // modulate the run into scratch, then pack it
            thread_local std::vector<float> scratch;
            if (scratch.size() < static_cast<size_t>(run)) scratch.resize(run);
            const int64_t off = src - xp;
            modulate_run(scratch.data(), src, msp + off, mtp + off, run);
            src = scratch.data();
          }
          pack_a_run(dst, uk.mr, i, k - k0, src, run, 1);
          k += run;
          c = 0;
          sx += taps;
          if (sx == S) {
            sx = 0;
            ++r;
          }
        }
        if (kcp > kc) pack_a_run(dst, uk.mr, i, kc, nullptr, kcp - kc, 1);
        next_pixel(n, p, q, P, Q);
      }
    };

    TileOut o{out.data_ptr<float>() + g * Kg * os[1], os[1],
              res.defined() ? res.data_ptr<float>() + g * Kg * rs[1] : nullptr, rs[1],
              b.defined() ? b.data_ptr<float>() + g * Kg : nullptr, static_cast<int>(activation),
              static_cast<float>(negative_slope)};
    auto store = [&](int64_t i0, int mr, int64_t j0, int nr, const float* tile, bool first, bool last) {
      int64_t row_off[kMaxMR], res_off[kMaxMR];
      for (int i = 0; i < mr; ++i) {
        const int64_t m = i0 + i, n = m / PQ, pq = m % PQ, p = pq / Q, q = pq % Q;
        row_off[i] = n * os[0] + p * os[2] + q * os[3];
        res_off[i] = n * rs[0] + p * rs[2] + q * rs[3];
      }
      store_tile(o, row_off, res_off, mr, nr, j0, tile, uk.nr, first, last);
    };
    // Channels-last output (and residual) rows are affine in m: the micro-kernel writes them directly.
    const bool out_affine = os[1] == 1 && os[3] == Kg * groups && os[2] == Q * os[3] && os[0] == P * os[2];
    const bool res_affine = !res.defined() || (rs[1] == 1 && rs[2] == Q * rs[3] && rs[0] == P * rs[2]);
    const AffineOut aff{o.c, os[3], o.res, rs[3], o.bias, o.act, o.slope};
    // A 1×1 stride-1 unpadded conv over dense channels-last pixels reads its GEMM rows straight from x.
    const bool pointwise = R == 1 && S == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && !msp && groups == 1;
    const bool dense = xs2 == W * xs3 && (x.size(0) == 1 || xs0 == H * xs2);
    const DirectA direct{xg, xs3};
    gemm_driver(uk, M, Kg, KK, bpg, pack_a, out_affine && res_affine ? &aff : nullptr, store, 0, NoBRow{},
                pointwise && dense && direct_a_pays(KK, xs3, uk.mr) ? &direct : nullptr);
  }
}

}  // namespace sft
