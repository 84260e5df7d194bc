// What the sparse conv's files share: the packed weight's layout, the input layout its tiles read, and the tile
// kernels (one set per ISA, sparse_tiles.cpp).
//
// Packed weight (one int32 tensor): a header, then per (block of KB output channels, group of kPackChannels input
// channels), k-major, the start of its nonzero blocks; then each block's tap code c·R·S + r·S + s (c the absolute
// input channel); then KB float values per block (zeros where a channel of the block has none there). k-major
// order makes the blocks of one output block over any run of channel groups contiguous, so the driver picks its
// channel chunk at run time.
//
// Input layout, per band of output rows: layout row u (input row p0·sh + u − ph) holds S tap-shifted copies of
// the padded row, L[u][s][c][q] = x[c][p0·sh + u − ph][q·sw + s·dw − pw] (zero outside the image), wq columns
// each. A tile is TW consecutive output pixels of one output row; tap (c, r, s) of all of them is then one
// aligned, contiguous run of TW floats at a fixed offset from the tile's base, so a kernel walks the nonzeros and
// does vector FMAs of one broadcast weight with TW pixels of input (Park et al. 2017; Elsen et al. 2020 for 1×1).
// The shifted copies keep every load within its cache lines: loads at the tap's own column offset split lines and
// ran the unstructured kernel ~1.5x slower.
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
