// What the sparse conv's files share: the packed weight's layout, the input layout its tiles read, and the tile
// kernels (one set per ISA, kernels.cpp).
//
// Packed weight (one int32 tensor): a header, then per (block of KB output channels, group of kPackChannels input
// channels), k-major, the start of its nonzero blocks; then each block's tap code c·R·S + r·S + s (c the absolute
// input channel); then KB float values per block (zeros where a channel of the block has none there). k-major
// order makes the blocks of one output block over any run of channel groups contiguous, so the driver picks its
// channel chunk at run time.
//
// Input layout, per image: rows × C × sw × wph floats, L[hh][c][f][j] = x[c][hh − ph][j·sw + f − pw] (zero outside
// the image). A tile is TW consecutive output pixels of one output row; tap (c, r, s) of all of them is then one
// contiguous run of TW floats at a fixed offset from the tile's base, so a kernel walks the nonzeros and does
// vector FMAs of one broadcast weight with TW pixels of input (Park et al. 2017; Elsen et al. 2020 for 1×1).
#pragma once

#include <cstdint>

namespace sft {
namespace sparse {

constexpr int kPackChannels = 8;  // input channels per group in the packed pointers (the run-time chunk's unit)
constexpr int kHeader = 12;
constexpr int32_t kMagic = 0x53505253;
enum Field { kFMagic, kFK, kFC, kFR, kFS, kFKB, kFNkb, kFNg, kFNnzb, kFNnz, kFGroups };

// One tile's work for a kernel: acc[b][0, TW) for b < KB (pitch ld) = (accumulate ? acc : 0) + Σ_i val[i·KB + b] ·
// x[off[i], off[i] + TW).
struct SparseTile {
  const float* x;
  const int32_t* off;
  const float* val;
  int64_t n;
  float* acc;
  int64_t ld;
  bool accumulate;
};
using SparseTileFn = void (*)(const SparseTile&);

struct SparseKernels {
  const char* isa;
  int tw1, tw4;  // pixels per tile of the KB = 1 and KB = 4 kernels
  SparseTileFn kb1, kb4;
};
const SparseKernels& kernels_avx512();
const SparseKernels& kernels_avx2();
const SparseKernels& kernels_generic();

}  // namespace sparse
}  // namespace sft
