// Cache of tensors derived from weights (packed GEMM panels, Winograd-transformed filters, thin-conv layouts),
// so each is built once per weight and rebuilt whenever the weight changes.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace sft {

// A tensor derived from `weight` (fp32, any layout), built once by build(weight made contiguous) and cached by
// weight address, shape, strides, `tag` and a fingerprint: of every value (any change rebuilds it), or of the
// version counter and sampled values for weights checked by version.
at::Tensor cached_weight_transform(const at::Tensor& weight, int64_t tag,
                                   const std::function<at::Tensor(const at::Tensor&)>& build);
// How many derived tensors the cache holds (tests).
int64_t weight_cache_entries();
// How weights are checked: 0 auto (trusted weights by version, others in full), 1 version, 2 full; returns the
// previous mode.
int64_t set_weight_check(int64_t mode);
// In auto mode, check this tensor by its version counter (trust) or by its values again (!trust).
void trust_weight(const at::Tensor& weight, bool trust);

}  // namespace sft
