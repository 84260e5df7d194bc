// Cache of tensors derived from weights (packed GEMM panels, Winograd-transformed filters).
//
// Keyed by the weight's address, shape, a caller tag and a 64-bit fingerprint of its contents: computing the
// fingerprint is one pass over the weights (tens of µs), far cheaper than re-deriving them, and any change to
// the values, however it is made (.data, copy_, load_state_dict, a new tensor at a reused address), misses.
#include <map>
#include <mutex>
#include <tuple>

#include "gemm.h"

namespace sft {

// Four independent multiply-xorshift streams (position-dependent) so the pass is not one serial chain.
uint64_t fingerprint(const float* p, int64_t n) {
  uint64_t h[4] = {0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(n), 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                   0x27D4EB2F165667C5ull};
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, 4);
    uint64_t& x = h[i & 3];
    x = (x ^ (bits + static_cast<uint64_t>(i) * 0xBF58476D1CE4E5B9ull)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
  }
  return (h[0] * 31 + h[1]) * 31 * 31 + h[2] * 31 + (h[3] ^ (h[3] >> 29));
}

at::Tensor cached_weight_transform(const at::Tensor& weight, int64_t tag, const std::function<at::Tensor()>& build) {
  using Key = std::tuple<const void*, uint64_t, std::vector<int64_t>, int64_t>;
  static std::mutex mu;
  static std::map<Key, at::Tensor> cache;
  TORCH_CHECK(weight.is_contiguous() && weight.scalar_type() == at::kFloat, "weight cache: contiguous fp32 expected");
  Key key{weight.data_ptr(), fingerprint(weight.data_ptr<float>(), weight.numel()), weight.sizes().vec(), tag};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  at::Tensor value = build();
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 512) cache.clear();  // bounded: a few models' worth of layers
  cache[key] = value;
  return value;
}

}  // namespace sft
