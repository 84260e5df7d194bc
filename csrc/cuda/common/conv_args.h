// The bindings' shared conv arguments (host, ATen): the stride / padding / dilation checks, the output size and the
// geometry fields every kernel's parameter struct carries (n, h, w_in, r, s, p, q, stride_*, pad_*, dil_*).
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace sft_cuda {

// P×Q of a kh×kw conv over the N×H×W×C tensor x, after checking the three pairs (two ints each; stride and
// dilation positive, padding non-negative) and that the output is not empty.
inline std::array<int64_t, 2> conv_output_hw(const at::Tensor& x, int64_t kh, int64_t kw, at::IntArrayRef stride,
                                             at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, "stride/padding/dilation: 2 ints");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0 && dilation[0] > 0 && dilation[1] > 0 && padding[0] >= 0 &&
              padding[1] >= 0, "stride and dilation must be positive, padding non-negative");
  const int64_t p = (x.size(1) + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t q = (x.size(2) + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(p > 0 && q > 0, "the conv output would be empty");
  return {p, q};
}

template <typename Params>
void set_conv_geometry(Params& prm, const at::Tensor& x, int64_t kh, int64_t kw, std::array<int64_t, 2> pq,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  prm.n = x.size(0);
  prm.h = x.size(1);
  prm.w_in = x.size(2);
  prm.r = kh;
  prm.s = kw;
  prm.p = pq[0];
  prm.q = pq[1];
  prm.stride_h = stride[0];
  prm.stride_w = stride[1];
  prm.pad_h = padding[0];
  prm.pad_w = padding[1];
  prm.dil_h = dilation[0];
  prm.dil_w = dilation[1];
}

}  // namespace sft_cuda
