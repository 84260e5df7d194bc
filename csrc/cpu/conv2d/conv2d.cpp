// sft_cpu::conv2d — implicit-GEMM convolution on the blocked GEMM engine (gemm.h).
//
// CUTLASS mapping per group: M = N·P·Q output pixels, N = K/groups output channels, K = R·S·C/groups with
// k ordered (r, s, c) so c is innermost: each A row segment is a contiguous channel run of one input pixel
// (the input is used channels-last; NCHW input is repacked once per call, a cost counted in benchmarks).
// Padding, stride and dilation are handled while packing A; no im2col buffer is built. The epilogue (bias,
// activation, residual) is applied in the tile store, which writes the output in its own memory format.
#include <ATen/ATen.h>

#include "cpu/engine/gemm.h"

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

namespace {

// dst[b][j][i] = src[b][i][j] (+ add[b][j][i]) for B batches of rows×cols matrices, in cache-sized blocks.
// ATen's copy between NCHW and channels-last runs far below memory speed on one thread; this is the layout
// change NCHW callers pay, so it gets its own loop.
void transpose_batched(const float* src, float* dst, const float* add, int64_t B, int64_t rows, int64_t cols) {
  constexpr int64_t T = 32;
  const int64_t rb = (rows + T - 1) / T, cb = (cols + T - 1) / T;
  at::parallel_for(0, B * rb * cb, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / (rb * cb), i0 = (t / cb) % rb * T, j0 = t % cb * T;
      const int64_t i1 = std::min(rows, i0 + T), j1 = std::min(cols, j0 + T);
      const float* s = src + b * rows * cols;
      float* d = dst + b * rows * cols;
      const float* a = add ? add + b * rows * cols : nullptr;
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) d[j * rows + i] = s[i * cols + j] + (a ? a[j * rows + i] : 0.f);
    }
  });
}

// out = act(conv(x, w) + b) + res for x with unit channel stride; out and res may have any strides
// (channels-last ones take the micro-kernel's direct store, others a strided tile store).
// scale/shift (optional, strided like x): the input is modulated, x·(scale + 1) + shift, as A is packed.
void conv2d_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                 at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t activation,
                 double negative_slope, const at::Tensor& res, at::Tensor& out, const at::Tensor& mscale,
                 const at::Tensor& mshift) {
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
        if (++q == Q) {
          q = 0;
          if (++p == P) {
            p = 0;
            ++n;
          }
        }
      }
    };

    TileOut o{out.data_ptr<float>() + g * Kg * os[1], os[1],
              res.defined() ? res.data_ptr<float>() + g * Kg * rs[1] : nullptr, rs[1],
              b.defined() ? b.data_ptr<float>() + g * Kg : nullptr, static_cast<int>(activation),
              static_cast<float>(negative_slope)};
    auto store = [&](int64_t i0, int mr, int64_t j0, int nr, const float* tile, bool first, bool last) {
      int64_t row_off[32], res_off[32];
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

}  // namespace

bool winograd_applicable(int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef dilation, int64_t groups);
void winograd_conv2d_into(int64_t tile, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef padding,
                          int64_t activation, double slope, const at::Tensor& res, at::Tensor& out, int64_t shuffle,
                          const at::Tensor& mscale, const at::Tensor& mshift);

bool taps_conv_applicable(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride,
                          at::IntArrayRef dilation, int64_t groups, const at::Tensor& res, const at::Tensor& out);
void conv2d_taps_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef padding,
                      int64_t activation, double slope, const at::Tensor& res, at::Tensor& out,
                      const at::Tensor& mscale, const at::Tensor& mshift);

bool rows_conv_applicable(int64_t C, int64_t R, int64_t S, at::IntArrayRef stride, at::IntArrayRef dilation,
                          int64_t groups, const at::Tensor& res, const at::Tensor& out);
void conv2d_rows_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out);

bool thin_conv_applicable(int64_t C, int64_t K, int64_t R, int64_t S, int64_t groups);
void thin_conv2d_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out);

// algorithm: 0 = auto (Winograd F(4×4,3×3) where it applies and channels and image size make it pay), 1 = direct
// implicit GEMM, 2 = Winograd F(4×4,3×3), 3 = Winograd F(2×2,3×3) (2 and 3: error if it does not apply).
at::Tensor conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                      int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                      int64_t algorithm, int64_t pixel_shuffle, const c10::optional<at::Tensor>& scale,
                      const c10::optional<at::Tensor>& shift) {
  TORCH_CHECK(input.dim() == 4 && weight.dim() == 4, "sft_cpu::conv2d: input and weight must be 4-D");
  TORCH_CHECK(input.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "sft_cpu::conv2d: float32 only");
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, "sft_cpu::conv2d: pairs expected");
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t K = weight.size(0), Cg = weight.size(1), R = weight.size(2), S = weight.size(3);
  TORCH_CHECK(groups >= 1 && C == Cg * groups && K % groups == 0, "sft_cpu::conv2d: channel/group mismatch");
  const int64_t P = (H + 2 * padding[0] - dilation[0] * (R - 1) - 1) / stride[0] + 1;
  const int64_t Q = (W + 2 * padding[1] - dilation[1] * (S - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::conv2d: output size is not positive");

  const int64_t r = pixel_shuffle;
  TORCH_CHECK(r >= 1 && K % (r * r) == 0, "sft_cpu::conv2d: pixel_shuffle must divide the output channels");
  // F.conv2d's rule: channels_last output iff the input's strides are channels-last-like (a slice counts).
  const bool out_cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const auto fmt = out_cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = pooled_empty({N, K / (r * r), P * r, Q * r}, input.options(), fmt);
  if (N == 0) return out;
  at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::Tensor();
  at::Tensor res = residual.has_value() && residual->defined() ? *residual : at::Tensor();
  if (res.defined())
    TORCH_CHECK(res.sizes() == out.sizes() && res.scalar_type() == at::kFloat,
                "sft_cpu::conv2d: residual must match the output");
  // SFT input modulation x·(scale + 1) + shift: fused into packing when scale/shift are strided like a
  // channels-last input, else applied as one pass first.
  at::Tensor ms, mt, x = input;
  if (scale.has_value() && scale->defined()) {
    TORCH_CHECK(shift.has_value() && shift->defined(), "sft_cpu::conv2d: scale and shift go together");
    TORCH_CHECK(scale->sizes() == input.sizes() && shift->sizes() == input.sizes() &&
                scale->scalar_type() == at::kFloat && shift->scalar_type() == at::kFloat,
                "sft_cpu::conv2d: scale and shift must be float32 and shaped like the input");
    if (input.stride(1) == 1 && scale->strides() == input.strides() && shift->strides() == input.strides()) {
      ms = *scale;
      mt = *shift;
    } else {
      x = at::addcmul(input + *shift, input, *scale);
    }
  }
  // Channels must be unit-stride for the run copies in pack_a: NCHW input is repacked once.
  if (x.stride(1) != 1) {
    const at::Tensor src = x;
    x = pooled_empty(src.sizes(), src.options(), at::MemoryFormat::ChannelsLast);
    if (src.is_contiguous())
      transpose_batched(src.data_ptr<float>(), x.data_ptr<float>(), nullptr, N, C, H * W);
    else
      x.copy_(src);
  }
  const bool can_wino = winograd_applicable(R, S, stride, dilation, groups);
  TORCH_CHECK(algorithm < 2 || can_wino, "sft_cpu::conv2d: algorithm='winograd' / 'winograd_f2' needs a 3x3 kernel "
              "with stride 1, dilation 1 and groups 1; use algorithm='direct' or None");
  // Winograd F(4×4,3×3) holds 36 transformed values per filter (direct: 9) and each of its 36 GEMMs has one row
  // per 4×4 output tile, so on small images its filters are read for a few rows only: auto takes it where the
  // batch has at least 9 tiles and under 1 MB of transformed filters per tile. Measured against direct
  // (interleaved, 1 / 2 threads): 7×7 images (4 tiles) 1.17-2.86x slower at 64-512 channels, 512→512 at 14×14
  // 1.34-1.46x slower; 128→128 at 14×14 and 512→512 at 28×28 0.76-0.97x the time; SFTNet's layers (1024+
  // tiles) 0.4-0.5x.
  const int64_t wino_tiles = N * ((P + 3) / 4) * ((Q + 3) / 4);
  const bool wino_pays = wino_tiles >= 9 && 36 * C * K * int64_t(sizeof(float)) < wino_tiles * (int64_t(1) << 20);
  const bool wino = algorithm >= 2 || (algorithm == 0 && can_wino && C >= 16 && K >= 16 && wino_pays);
  const int64_t wtile = algorithm == 3 ? 2 : 4;  // F(2×2,3×3) on request, else F(4×4,3×3)
  if (r > 1) {
    if (wino && out_cl && (!res.defined() || res.stride(1) == 1)) {  // shuffle written by the output transform
      winograd_conv2d_into(wtile, x, weight, b, padding, activation, negative_slope, res, out, r, ms, mt);
      return out;
    }
    const auto opt = [](const at::Tensor& t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; };
    at::Tensor y = at::pixel_shuffle(conv2d_cpu(x, weight, bias, stride, padding, dilation, groups, activation,
                                                negative_slope, c10::nullopt, algorithm, 1, opt(ms), opt(mt)), r);
    if (res.defined()) y = y + res;
    return y.contiguous(fmt);
  }
  const bool thin = !wino && !ms.defined() && thin_conv_applicable(C, K, R, S, groups);  // few in or out channels
  auto run = [&](const at::Tensor& rr, at::Tensor& o) {
    if (!wino && !ms.defined() && rows_conv_applicable(C, R, S, stride, dilation, groups, rr, o)) {
      conv2d_rows_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
    } else if (thin) {
      thin_conv2d_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
    } else if (!wino && taps_conv_applicable(x, weight, stride, dilation, groups, rr, o)) {
      conv2d_taps_into(x, weight, b, padding, activation, negative_slope, rr, o, ms, mt);
    } else if (!wino) {
      conv2d_into(x, weight, b, stride, padding, dilation, groups, activation, negative_slope, rr, o, ms, mt);
    } else if (!rr.defined() || rr.stride(1) == 1) {
      winograd_conv2d_into(wtile, x, weight, b, padding, activation, negative_slope, rr, o, 1, ms, mt);
    } else {
      winograd_conv2d_into(wtile, x, weight, b, padding, activation, negative_slope, at::Tensor(), o, 1, ms, mt);
      o.add_(rr);
    }
  };
  if (out_cl || out.stride(1) == 1) {
    run(res, out);
    return out;
  }
  // NCHW output: compute channels-last (direct stores) and transpose once, adding the residual on the way;
  // far cheaper than scattering every tile with a stride of P·Q.
  at::Tensor tmp = pooled_empty({N, K, P, Q}, input.options(), at::MemoryFormat::ChannelsLast);
  run(at::Tensor(), tmp);
  const bool fuse_res = !res.defined() || res.is_contiguous();
  transpose_batched(tmp.data_ptr<float>(), out.data_ptr<float>(), fuse_res && res.defined() ? res.data_ptr<float>() : nullptr,
                    N, P * Q, K);
  if (!fuse_res) out.add_(res);
  return out;
}

}  // namespace sft
