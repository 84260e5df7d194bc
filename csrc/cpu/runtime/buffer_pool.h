// Large op outputs reused across calls instead of fresh, page-faulting allocations.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft {

// at::empty for op outputs, except that buffers of 1 MiB or more are reused across calls.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options,
                        at::MemoryFormat fmt = at::MemoryFormat::Contiguous);
// Returns every idle buffer to the OS.
void buffer_pool_clear();
// Bytes held idle for reuse.
int64_t buffer_pool_idle_bytes();
// Sets the idle-bytes cap (MiB; 0 = off: outputs come from at::empty again) and returns the previous one; a
// negative value only reads it. Peak-memory measurement turns the pool off so every output is seen.
int64_t buffer_pool_set_capacity_mb(int64_t mb);

}  // namespace sft
