// Cache of tensors derived from weights (packed GEMM panels, Winograd-transformed filters).
//
// Keyed by the weight's address, shape, strides, a caller tag and a 64-bit fingerprint: of all its values (one
// vectorized pass, far cheaper than re-deriving them; any change, however it is made, misses), or, for weights
// checked by version (set_weight_check, trust_weight), of its version counter and 64 sampled values.
#include "cpu/runtime/weight_cache.h"

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace sft {

// 128 independent lanes (16 × 32-bit in each of 8 vectors) each take every 128th word of the weights through
// h = xorshift(h + w): every step is a bijection of h, so changing any single value always changes its lane's
// result, and the carries of the add keep the hash from being linear (structured edits such as swaps do not
// cancel). The lanes then fold into 64 bits with a multiply-xorshift. Vectorized, one pass runs at roughly
// the speed memory delivers the weights: the scalar multiply chain it replaced took 41 % of a 512→2048 1×1
// conv at 7×7 (perf), whose 4 MB of weights are read once more per call for this check.
namespace {
// One multiply-xorshift step folding v into the running hash s.
inline uint64_t mix(uint64_t s, uint64_t v) {
  s = (s ^ v) * 0x94D049BB133111EBull;
  return s ^ (s >> 31);
}

using v16u = uint32_t __attribute__((vector_size(64)));
constexpr int kLanesVec = 8;

// Inlined into each ISA's wrapper below, so each compiles it for that ISA's vectors.
__attribute__((always_inline)) inline uint64_t fingerprint_body(const float* p, int64_t n) {
  v16u h[kLanesVec];
  for (int a = 0; a < kLanesVec; ++a)
    for (int l = 0; l < 16; ++l) h[a][l] = 0x9E3779B9u * static_cast<uint32_t>(a * 16 + l + 1);
  int64_t i = 0;
  for (; i + 16 * kLanesVec <= n; i += 16 * kLanesVec)
    for (int a = 0; a < kLanesVec; ++a) {
      v16u w;
      std::memcpy(&w, p + i + 16 * a, sizeof(w));
      v16u x = h[a] + w;
      x ^= x << 7;
      x ^= x >> 9;
      h[a] = x;
    }
  uint64_t s = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(n);
  for (int a = 0; a < kLanesVec; ++a)
    for (int l = 0; l < 16; ++l) s = mix(s, h[a][l]);
  for (; i < n; ++i) {  // the last n % 128 values, in order
    uint32_t bits;
    std::memcpy(&bits, p + i, 4);
    s = mix(s, bits + (static_cast<uint64_t>(i) << 32));
  }
  return s;
}
__attribute__((target("avx512f"))) uint64_t fingerprint_avx512(const float* p, int64_t n) {
  return fingerprint_body(p, n);
}
__attribute__((target("avx2"))) uint64_t fingerprint_avx2(const float* p, int64_t n) {
  return fingerprint_body(p, n);
}
}  // namespace

// The same value on every CPU: the three builds compute the same function.
uint64_t fingerprint(const float* p, int64_t n) {
  static const int level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
  return level == 2 ? fingerprint_avx512(p, n) : level == 1 ? fingerprint_avx2(p, n) : fingerprint_body(p, n);
}

namespace {
// 0 auto: version counter + sampled values for the weights of converted modules (trust_weight), the full
// fingerprint for every other tensor; 1 version: the counter for every tensor; 2 full: the fingerprint for all.
std::atomic<int> g_weight_check{0};

// 64 values spread over the weights, plus n: catches every rewrite of the whole tensor (.data.normal_(),
// .data.copy_(other), .data.mul_(s)), not an edit of a few values.
uint64_t sampled_fingerprint(const float* p, int64_t n) {
  uint64_t s = 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(n);
  for (int64_t t = 0; t < 64 && n > 0; ++t) {
    uint32_t bits;
    std::memcpy(&bits, p + t * (n - 1) / 63, 4);
    s = mix(s, bits + (static_cast<uint64_t>(t) << 32));
  }
  return s;
}

using Key = std::tuple<const void*, uint64_t, std::vector<int64_t>, std::vector<int64_t>, int64_t>;
// The tensors trust_weight registered, held weakly: an entry pins its TensorImpl's address (a weak reference
// keeps the memory) until it is looked up after the tensor died, so a new tensor can never inherit the trust.
using Trusted = std::unordered_map<const c10::TensorImpl*, c10::weak_intrusive_ptr<c10::TensorImpl>>;
Trusted& trusted() {
  static Trusted t;
  return t;
}
std::mutex& cache_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<Key, at::Tensor>& weight_cache() {
  static std::map<Key, at::Tensor> cache;
  return cache;
}
}  // namespace

int64_t set_weight_check(int64_t mode) {
  TORCH_CHECK(mode >= 0 && mode <= 2, "set_weight_check: mode must be 0 (auto), 1 (version) or 2 (full)");
  return g_weight_check.exchange(static_cast<int>(mode));
}

void trust_weight(const at::Tensor& weight, bool trust) {
  std::lock_guard<std::mutex> lock(cache_mutex());
  const c10::TensorImpl* impl = weight.unsafeGetTensorImpl();
  if (trust)
    trusted().insert_or_assign(impl, c10::weak_intrusive_ptr<c10::TensorImpl>(weight.getIntrusivePtr()));
  else
    trusted().erase(impl);
}

namespace {
// Called with the cache mutex held.
bool is_trusted(const at::Tensor& weight) {
  auto& t = trusted();
  const auto it = t.find(weight.unsafeGetTensorImpl());
  if (it == t.end()) return false;
  if (it->second.expired()) {  // that tensor died: the address belongs to a new one now
    t.erase(it);
    return false;
  }
  return true;
}
}  // namespace

int64_t weight_cache_entries() {
  std::lock_guard<std::mutex> lock(cache_mutex());
  return static_cast<int64_t>(weight_cache().size());
}

at::Tensor cached_weight_transform(const at::Tensor& weight_in, int64_t tag,
                                   const std::function<at::Tensor(const at::Tensor&)>& build) {
  auto& mu = cache_mutex();
  auto& cache = weight_cache();
  TORCH_CHECK(weight_in.scalar_type() == at::kFloat, "weight cache: fp32 expected");
  // A weight in any dense layout (model.to(memory_format=torch.channels_last) makes conv weights channels-last)
  // is keyed and fingerprinted where it lies, strides included, and copied contiguous only to build: a copy
  // per call had a fresh address each time, so every call missed and re-packed.
  const at::Tensor weight = weight_in.is_non_overlapping_and_dense() ? weight_in : weight_in.contiguous();
  // Checked by version, the tensor's version counter (moved by every in-place op, copy_, optimizer step and
  // load_state_dict, not by writes through .data or NumPy) stands in for the full pass over the values.
  // Inference tensors have no version counter: always the full pass.
  const int mode = g_weight_check.load(std::memory_order_relaxed);
  bool by_version = mode == 1;
  if (mode == 0) {
    std::lock_guard<std::mutex> lock(mu);
    by_version = is_trusted(weight_in);
  }
  by_version = by_version && !weight.is_inference();
  const uint64_t fp = by_version ? sampled_fingerprint(weight.data_ptr<float>(), weight.numel()) ^
                                       (static_cast<uint64_t>(weight._version()) * 0xBF58476D1CE4E5B9ull)
                                 : fingerprint(weight.data_ptr<float>(), weight.numel());
  Key key{weight.data_ptr(), fp, weight.sizes().vec(), weight.strides().vec(), tag};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  at::Tensor value = build(weight.contiguous());
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 512) cache.clear();  // bounded: a few models' worth of layers
  cache[key] = value;
  return value;
}

}  // namespace sft
