// Reuse of large output buffers across calls.
//
// A multi-megabyte tensor from at::empty is a fresh mmap under glibc's default malloc, so every call pays a page
// fault per 4 KiB page of its output (measured: ~22 % of the 512×512 Winograd conv; the whole converted SFTNet
// ran 1.3× faster with GLIBC_TUNABLES set so malloc keeps such blocks). Outputs of at least kMinBytes come from
// here instead: when such a tensor dies its block goes back to a free list keyed by size and the next output of
// that size reuses it, already faulted in. Bounded: at most SFT_KERNELS_POOL_MB (default 1024) MiB are kept
// idle; torch.ops.sft_cpu.buffer_pool_clear() returns them to the OS.
#include "cpu/runtime/buffer_pool.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace sft {
namespace {

constexpr size_t kMinBytes = size_t(1) << 20;
constexpr size_t kAlign = 4096;

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // idle blocks by size
  size_t idle_bytes = 0;
  std::atomic<size_t> cap{[] {
    // a value that is not a whole number of MiB keeps the default (the Python side reports it: runtime/knobs.py)
    const char* s = std::getenv("SFT_KERNELS_POOL_MB");
    char* end = nullptr;
    const long long mb = s && *s ? std::strtoll(s, &end, 10) : -1;
    return static_cast<size_t>(mb >= 0 && end && *end == '\0' && mb < (1LL << 40) ? mb : 1024) << 20;
  }()};
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: tensors may outlive static destruction at exit
  return *p;
}

void give_back(void* ptr, size_t bytes) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    if (p.idle_bytes + bytes <= p.cap) {
      p.free.emplace(bytes, ptr);
      p.idle_bytes += bytes;
      return;
    }
  }
  std::free(ptr);
}

void* take(size_t bytes) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    // The block of this size freed last (equal keys keep insertion order): it is the likeliest to be in cache.
    // Taking the oldest rotated the writes through every idle block: a memory-bound 16384x32x32 GEMM whose
    // outputs live on for a call or two measured 1.04-1.08x faster this way, interleaved in one process.
    auto range = p.free.equal_range(bytes);
    if (range.first != range.second) {
      const auto it = std::prev(range.second);
      void* ptr = it->second;
      p.free.erase(it);
      p.idle_bytes -= bytes;
      return ptr;
    }
  }
  void* ptr = std::aligned_alloc(kAlign, bytes);
  TORCH_CHECK(ptr, "sft_kernels: out of memory allocating ", bytes, " bytes");
  return ptr;
}

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat fmt) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes = (static_cast<size_t>(numel) * options.dtype().itemsize() + kAlign - 1) / kAlign * kAlign;
  if (bytes < kMinBytes || options.device().type() != at::kCPU || pool().cap == 0)
    return at::empty(sizes, options.memory_format(fmt));
  std::vector<int64_t> strides(sizes.size());
  if (fmt == at::MemoryFormat::ChannelsLast) {
    TORCH_CHECK(sizes.size() == 4, "pooled_empty: channels_last needs 4-D sizes");
    strides = {sizes[1] * sizes[2] * sizes[3], 1, sizes[3] * sizes[1], sizes[1]};
  } else {
    int64_t st = 1;
    for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
      strides[d] = st;
      st *= sizes[d];
    }
  }
  void* ptr = take(bytes);
  return at::from_blob(ptr, sizes, strides, [bytes](void* p) { give_back(p, bytes); }, options);
}

void buffer_pool_clear() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  for (auto& kv : p.free) std::free(kv.second);
  p.free.clear();
  p.idle_bytes = 0;
}

int64_t buffer_pool_set_capacity_mb(int64_t mb) {
  const int64_t old = static_cast<int64_t>(pool().cap.load() >> 20);
  if (mb >= 0) {
    pool().cap = static_cast<size_t>(mb) << 20;
    if (mb == 0) buffer_pool_clear();
  }
  return old;
}

int64_t buffer_pool_idle_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return static_cast<int64_t>(p.idle_bytes);
}

}  // namespace sft
