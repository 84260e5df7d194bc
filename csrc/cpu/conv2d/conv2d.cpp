// sft_cpu::conv2d: checks, output allocation and layout (NCHW input repacked channels-last once, NCHW output
// transposed once at the end, pixel shuffle, input modulation), then the path select.cpp picks (paths.h).
#include "cpu/conv2d/conv2d.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <utility>

#include "cpu/conv2d/paths.h"
#include "cpu/conv2d/select.h"
#include "cpu/engine/config.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"

namespace sft {
namespace {

// The taps [first, last] of a kernel axis that read some input: with a dilation larger than the image (DeepLab's
// ASPP, rate 36 on 32² maps) the outer taps read only padding for every output, and are dropped.
std::pair<int64_t, int64_t> taps_read(int64_t n, int64_t taps, int64_t out, int64_t stride, int64_t pad,
                                      int64_t dil) {
  int64_t first = taps, last = -1;
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t o = t * dil - pad, y0 = o >= 0 ? 0 : (-o + stride - 1) / stride;  // first output reading row >= 0
    if (y0 < out && y0 * stride + o < n) first = std::min(first, t), last = t;
  }
  return {first, last};
}

}  // namespace

at::Tensor conv2d_cpu(const at::Tensor& input, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding_in, at::IntArrayRef dilation, int64_t groups,
                      int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                      int64_t algorithm, int64_t pixel_shuffle, const c10::optional<at::Tensor>& scale,
                      const c10::optional<at::Tensor>& shift, c10::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(input.dim() == 4 && weight_in.dim() == 4, "sft_cpu::conv2d: input and weight must be 4-D");
  // bf16 maps handed from one algorithm-4 conv to the next: a bfloat16 input or output, algorithm 4 only
  const bool in16 = input.scalar_type() == at::kBFloat16;
  const auto odt = out_dtype.value_or(at::kFloat);
  TORCH_CHECK((input.scalar_type() == at::kFloat || (in16 && algorithm == 4)) && weight_in.scalar_type() == at::kFloat,
              "sft_cpu::conv2d: float32 only (a bfloat16 input with algorithm='bf16' only)");
  TORCH_CHECK(odt == at::kFloat || (odt == at::kBFloat16 && algorithm == 4),
              "sft_cpu::conv2d: out_dtype float32, or bfloat16 with algorithm='bf16'");
  TORCH_CHECK(stride.size() == 2 && padding_in.size() == 2 && dilation.size() == 2,
              "sft_cpu::conv2d: pairs expected");
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t K = weight_in.size(0), Cg = weight_in.size(1);
  TORCH_CHECK(groups >= 1 && C == Cg * groups && K % groups == 0, "sft_cpu::conv2d: channel/group mismatch");
  TORCH_CHECK(K > 0 && weight_in.size(2) > 0 && weight_in.size(3) > 0, "sft_cpu::conv2d: the weight needs an output "
              "channel and a kernel of at least 1x1, got ", weight_in.sizes());
  const int64_t P = (H + 2 * padding_in[0] - dilation[0] * (weight_in.size(2) - 1) - 1) / stride[0] + 1;
  const int64_t Q = (W + 2 * padding_in[1] - dilation[1] * (weight_in.size(3) - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(P > 0 && Q > 0, "sft_cpu::conv2d: output size is not positive");
  // Taps that read only padding are dropped (a view of the weight; the paths take P, Q from the output and the
  // padding as the top / left offset only), unless Winograd, which needs all 3×3, is asked for.
  const auto [r0, r1] = taps_read(H, weight_in.size(2), P, stride[0], padding_in[0], dilation[0]);
  const auto [s0, s1] = taps_read(W, weight_in.size(3), Q, stride[1], padding_in[1], dilation[1]);
  const bool trim = algorithm < 2 && r1 >= r0 && s1 >= s0 &&
                    (r1 - r0 + 1 < weight_in.size(2) || s1 - s0 + 1 < weight_in.size(3));
  const at::Tensor weight = trim ? weight_in.slice(2, r0, r1 + 1).slice(3, s0, s1 + 1) : weight_in;
  const int64_t pad[2] = {padding_in[0] - (trim ? r0 * dilation[0] : 0),
                          padding_in[1] - (trim ? s0 * dilation[1] : 0)};
  const at::IntArrayRef padding(pad);
  const int64_t R = weight.size(2), S = weight.size(3);

  const int64_t r = pixel_shuffle;
  TORCH_CHECK(r >= 1 && K % (r * r) == 0, "sft_cpu::conv2d: pixel_shuffle must divide the output channels");
  // F.conv2d's rule: channels_last output iff the input's strides are channels-last-like (a slice counts).
  const bool out_cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  const auto fmt = out_cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = pooled_empty({N, K / (r * r), P * r, Q * r}, input.options().dtype(odt), fmt);
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
    TORCH_CHECK(!in16, "sft_cpu::conv2d: a bfloat16 input takes no modulation");
    if (input.stride(1) == 1 && scale->strides() == input.strides() && shift->strides() == input.strides()) {
      ms = *scale;
      mt = *shift;
    } else {
      x = at::addcmul(input + *shift, input, *scale);
    }
  }
  // Channels must be unit-stride for the run copies in pack_a: NCHW input is repacked once.
  if (x.stride(1) != 1) x = in16 ? x.contiguous(at::MemoryFormat::ChannelsLast) : to_channels_last_cpu(x);
  TORCH_CHECK(algorithm >= 0 && algorithm <= 5, "sft_cpu::conv2d: algorithm code must lie in [0, 5], got ", algorithm);
  const bool bf16 = algorithm == 4, wino16 = algorithm == 5;
  TORCH_CHECK(!bf16 || groups == 1, "sft_cpu::conv2d: algorithm='bf16' runs ungrouped convs (groups=1), got groups=",
              groups, "; use algorithm=None for grouped and depthwise convs");
  TORCH_CHECK(!wino16 || (R == 3 && S == 3 && stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 &&
                          dilation[1] == 1 && groups == 1),
              "sft_cpu::conv2d: algorithm='bf16_winograd' runs 3x3 convs of stride 1, dilation 1 and groups 1, got a ",
              R, "x", S, " kernel, stride ", stride, ", dilation ", dilation, ", groups ", groups,
              "; use algorithm='bf16' for other convs");
  const int64_t wtile = wino16 ? 0 : winograd_tile(algorithm, N, C, K, R, S, P, Q, stride, dilation, groups);
  const bool wino = wtile != 0;
  if (r > 1) {
    if (bf16 && (K / (r * r)) % 32 == 0 && out_cl && (!res.defined() || res.stride(1) == 1)) {  // shuffle by the store
      conv2d_bf16_into(x, weight, b, stride, padding, dilation, activation, negative_slope, res, out, ms, mt, r);
      return out;
    }
    const bool undilated = dilation[0] == 1 && dilation[1] == 1;
    // shuffle by the output transform
    if ((wino || wino16) && undilated && out_cl && (!res.defined() || res.stride(1) == 1)) {
      if (wino16)
        conv2d_winograd_bf16_into(x, weight, b, padding, activation, negative_slope, res, out, r, ms, mt);
      else
        conv2d_winograd_into(wtile, x, weight, b, padding, dilation, activation, negative_slope, res, out, r, ms, mt);
      return out;
    }
    const auto opt = [](const at::Tensor& t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; };
    at::Tensor y = at::pixel_shuffle(conv2d_cpu(x, weight_in, bias, stride, padding_in, dilation, groups, activation,
                                                negative_slope, c10::nullopt, algorithm, 1, opt(ms), opt(mt)), r);
    if (res.defined()) y = y + res;
    return y.to(odt).contiguous(fmt);
  }
  auto run = [&](const at::Tensor& rr, at::Tensor& o) {
    if (bf16) {
      if (!rr.defined() || rr.stride(1) == 1) {
        conv2d_bf16_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o, ms, mt, 1);
      } else {  // a residual of other strides added after, to float32 sums (a bf16 output rounded once)
        at::Tensor t = o.scalar_type() == at::kFloat ? o : at::empty_like(o, o.options().dtype(at::kFloat));
        conv2d_bf16_into(x, weight, b, stride, padding, dilation, activation, negative_slope, at::Tensor(), t, ms, mt,
                         1);
        t.add_(rr);
        if (!t.is_same(o)) o.copy_(t);
      }
      return;
    }
    if (wino || wino16) {  // a residual of other strides added after
      const bool fused = !rr.defined() || rr.stride(1) == 1;
      const at::Tensor r_in = fused ? rr : at::Tensor();
      if (wino16)
        conv2d_winograd_bf16_into(x, weight, b, padding, activation, negative_slope, r_in, o, 1, ms, mt);
      else
        conv2d_winograd_into(wtile, x, weight, b, padding, dilation, activation, negative_slope, r_in, o, 1, ms, mt);
      if (!fused) o.add_(rr);
      return;
    }
    switch (direct_conv_path(x, weight, stride, dilation, groups, ms.defined(), rr, o)) {
      case ConvPath::kDepthwise:
        conv2d_depthwise_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
        break;
      case ConvPath::kGrouped:
        conv2d_grouped_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
        break;
      case ConvPath::kRows:
        conv2d_rows_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
        break;
      case ConvPath::kThin:
        conv2d_thin_into(x, weight, b, stride, padding, dilation, activation, negative_slope, rr, o);
        break;
      case ConvPath::kTaps:
        conv2d_taps_into(x, weight, b, padding, activation, negative_slope, rr, o, ms, mt);
        break;
      case ConvPath::kImplicitGemm:
        conv2d_implicit_gemm_into(x, weight, b, stride, padding, dilation, groups, activation, negative_slope, rr,
                                  o, ms, mt);
        break;
    }
  };
  if (out_cl || out.stride(1) == 1) {
    run(res, out);
    return out;
  }
  // NCHW output: compute channels-last (direct stores) and transpose once, adding the residual on the way;
  // far cheaper than scattering every tile with a stride of P·Q.
  // (A bfloat16 output is rounded once, after the residual: the float32 result copied.)
  at::Tensor tmp = pooled_empty({N, K, P, Q}, input.options().dtype(at::kFloat), at::MemoryFormat::ChannelsLast);
  run(at::Tensor(), tmp);
  if (odt != at::kFloat) {
    out.copy_(res.defined() ? tmp.add_(res) : tmp);
    return out;
  }
  const bool fuse_res = !res.defined() || res.is_contiguous();
  transpose_batched(tmp.data_ptr<float>(), out.data_ptr<float>(),
                    fuse_res && res.defined() ? res.data_ptr<float>() : nullptr, N, P * Q, K);
  if (!fuse_res) out.add_(res);
  return out;
}

}  // namespace sft
