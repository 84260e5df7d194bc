// What the sparse conv's files share: the packed weight's layout, the input layout its tiles read, and the tile
// kernels (one set per ISA, sparse_tiles.cpp).
//
// Packed weight (one int32 tensor): a header, then per (block of KB output channels, group of kPackChannels input
// channels), k-major, the start of its nonzero blocks; then each block's tap code c·R·S + r·S + s (c the absolute
// input channel); then KB float values per block (zeros where a channel of the block has none there). k-major
// order makes the blocks of one output block over any run of channel groups contiguous, so the driver picks its
// channel chunk at run time.
//
// Input layout: each input row a thread reads is transposed once into a padded channel-major row, T[c][j] =
// x[c][h][j − pw] (zero outside the image), kept in a ring of the rows the current tile reads. A tile is RB output
// rows × VW output pixels (one vector per row). Per chunk of input channels its taps are copied from the ring into
// an L1 block of U = (RB − 1)·sh + (R − 1)·dh + 1 input rows, L[c − c0][u][s][0, VW) = T_u[c][q0·sw + s·dw +
// j·sw], so tap (c, r, s) of output row i of the tile is one aligned vector at offset ((c − c0)·U + r·dh)·S + s)·VW
// + i·sh·S·VW: a kernel walks the nonzeros, and for each loads the offset and broadcasts the weight once for RB
// FMAs, one per row (Park et al. 2017; Elsen et al. 2020 for 1×1). Rows share their input rows, so the block holds
// U, not RB·R, rows per channel. The copy keeps every load within a cache line (loads at the tap's own column
// split lines: ~1.5x slower) and in L1; a 1×1 stride-1 conv reads the ring rows in place.
#pragma once

#include <cstdint>

namespace sft {
namespace sparse {

constexpr int kPackChannels = 8;  // input channels per group in the packed pointers (the run-time chunk's unit)
constexpr int kHeader = 12;
constexpr int32_t kMagic = 0x53505253;
enum Field { kFMagic, kFK, kFC, kFR, kFS, kFKB, kFNkb, kFNg, kFNnzb, kFNnz, kFGroups };

constexpr int kMaxTileRows = 8;

// One tile's work over one chunk of input channels, for every output block: for kb < nkb, output row i < RB,
// acc[(kb·KB + b)·ld + i·VW + (0, VW)] = (accumulate ? acc : 0) + Σ val[n·KB + b] · x[i][off[n] + (0, VW)] over
// block kb's nonzeros n in the chunk, [begin[kb·stride], end[kb·stride]). One call covers all blocks, so a block
// with few nonzeros in the chunk costs a loop, not a call.
struct SparseChunk {
  const float* x[kMaxTileRows];
  const int32_t* off;
  const float* val;
  const int32_t* begin;
  const int32_t* end;
  int64_t stride, nkb;
  float* acc;
  int64_t ld;
  bool accumulate;
};
using SparseChunkFn = void (*)(const SparseChunk&);

struct SparseKernels {
  const char* isa;
  int vw;        // pixels per tile row (one vector)
  int rb1, rb4;  // output rows per tile of the KB = 1 and KB = 4 kernels
  SparseChunkFn kb1, kb4;
};
const SparseKernels& kernels_avx512();
const SparseKernels& kernels_avx2();
const SparseKernels& kernels_generic();

}  // namespace sparse
}  // namespace sft
