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
// split lines: ~1.5x slower) and in L1; a 1×1 conv reads its rows in place (without padding: RB·VW pixels of
// the output's rows joined, gathered into one row per tile, its vectors side by side).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/engine/config.h"

namespace sft {
namespace sparse {

constexpr int kPackChannels = 8;  // input channels per group in the packed pointers (the run-time chunk's unit)
constexpr int kHeader = 14;
constexpr int32_t kMagic = 0x53505253;
// kFTapGroups, kFGroupRows, kFGroupVw: the channels per chunk and the tile (rows, pixels) of the tap groups after
// the values (0: none; below).
enum Field { kFMagic, kFK, kFC, kFR, kFS, kFKB, kFNkb, kFNg, kFNnzb, kFNnz, kFGroups, kFTapGroups, kFGroupRows,
             kFGroupVw };

// Input channels per chunk (whole groups of kPackChannels) for tiles reading U rows of S taps of vw pixels: the
// chunk's taps take about kSparseChunkBytes (config.h).
inline int64_t chunk_channels(int64_t U, int64_t S, int vw) {
  const int64_t group_bytes = U * S * kPackChannels * vw * int64_t(sizeof(float));
  return std::max<int64_t>(1, kSparseChunkBytes / group_bytes) * kPackChannels;
}

constexpr int kMaxTileRows = 8;

// One tile's work over one chunk of input channels, for every output block: for kb < nkb, output row i < RB,
// acc[(kb·KB + b)·ld + i·VW + (0, VW)] = (accumulate ? acc : 0) + Σ val[n·KB + b] · x[i][off[n]·scale + (0, VW)]
// over block kb's nonzeros n in the chunk, [begin[kb·stride], end[kb·stride]). One call covers all blocks, so a
// block with few nonzeros in the chunk costs a loop, not a call. Flat 1×1 tiles pass the packed tap codes (input
// channels) as off and their rows' channel stride as scale, so no offsets are built per call.
struct SparseChunk {
  const float* x[kMaxTileRows];
  const int32_t* off;
  int64_t scale;
  const float* val;
  const int32_t* begin;
  const int32_t* end;
  int64_t stride, nkb;
  float* acc;
  int64_t ld;
  bool accumulate;
};
using SparseChunkFn = void (*)(const SparseChunk&);

// Unstructured 3×3 convs at stride and dilation 1: output row i of a tile reads input row i + r for tap r, so an
// output channel's nonzeros at (c, r, s) for r = 0, 1, 2 share all but two of their input vectors. Such a group
// loads its rows once (8 to 10 loads for 8 to 24 FMAs instead of 8 per FMA row); at 50 % kept that is ~35 % fewer
// loads, and the kernel, load-bound before, runs on its FMAs. A group: the offset of its (c, s) column's first row
// in the tap block and the weights of taps r = 0..2 (0 where absent); its rows are 3·VW floats apart.
struct TapGroup {
  int32_t off;
  float w[3];
};

// One tile's work over one chunk, as groups sorted by which taps they hold (mask m = Σ 2^r, 1..7): the groups of
// output channel k with mask m are g[ranges[kGroupRanges·k + m − 1], ranges[kGroupRanges·k + m]). acc as in
// SparseChunk (KB = 1).
constexpr int kGroupRanges = 8;  // per output channel and chunk: where each of the 7 masks' groups start, and the end
struct GroupedChunk {
  const float* x;
  const TapGroup* g;
  const int32_t* ranges;
  int64_t nkb;
  float* acc;
  int64_t ld;
  bool accumulate;
};
using GroupedChunkFn = void (*)(const GroupedChunk&);

// The groups of an unstructured (KB = 1) 3×3 packed weight (header hdr, its values as packed) per chunk of cpc
// channels (tiles of U input rows, vw pixels): groups and ranges[(chunk·nkb + k)·kGroupRanges + j] as
// GroupedChunk reads them. The packer appends them for the tiles of the process's kernels (sparse_kernels()) and
// the chunk size the driver picks for them (ranges, then groups, after the values).
void group_taps(const int32_t* hdr, int64_t cpc, int64_t U, int vw, std::vector<TapGroup>& groups,
                std::vector<int32_t>& ranges);

struct SparseKernels {
  const char* isa;
  int vw;        // pixels per tile row (one vector)
  int rb1, rb4;  // output rows per tile of the KB = 1 and KB = 4 kernels
  SparseChunkFn kb1, kb4;
  GroupedChunkFn grouped;    // kb1's tiles as tap groups (null: none)
  int rb1_short;             // rows of kb1_short: KB = 1 tiles for flat maps of at most rb1_short vectors
  SparseChunkFn kb1_short;  // (null: none)
};
const SparseKernels& kernels_avx512();
const SparseKernels& kernels_avx2();
const SparseKernels& kernels_generic();
const SparseKernels& sparse_kernels();  // the set this process runs (sparse_conv2d.cpp)

}  // namespace sparse
}  // namespace sft
