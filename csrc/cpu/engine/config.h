// Every tile and blocking parameter of the CPU kernels. Measurements are from the 2-core Sapphire Rapids machine
// the benchmarks ran on (benchmarks/results), interleaved in one process unless said otherwise.
#pragma once

#include <cstdint>

namespace sft {

// ---- Packed layouts --------------------------------------------------------------------------------------------
// Packed A and B panels interleave KU k-steps per group (A micro-panel [k/KU][MR][KU], B rows padded to a multiple
// of KU), so every broadcast address in a micro-kernel's k loop is a constant offset.
constexpr int KU = 8;

// ---- Micro-kernel register tiles (MR rows × NR columns) --------------------------------------------------------
// AVX-512: 28 accumulators + 2 B vectors + 2 broadcasts fill the 32 zmm registers; its assembly is written for
// exactly this shape.
constexpr int kAvx512MR = 14, kAvx512NR = 32;
// Rows per call of the AVX-512 short-tile kernel: a strided or taps tile of fewer than kAvx512MR rows runs in
// chunks of at most this many (2 accumulators each).
constexpr int kAvx512TailRows = 7;
constexpr int kAvx2MR = 6, kAvx2NR = 16;
constexpr int kGenericMR = 4, kGenericNR = 16;
// Upper bounds over every ISA's tile: stack tiles and per-row offset arrays are sized by them.
constexpr int kMaxMR = 32, kMaxNR = 64;
static_assert(kAvx512MR <= kMaxMR && kAvx2MR <= kMaxMR && kGenericMR <= kMaxMR, "kMaxMR too small");
static_assert(kAvx512NR <= kMaxNR && kAvx2NR <= kMaxNR && kGenericNR <= kMaxNR, "kMaxNR too small");

// ---- GEMM cache blocking (gemm.cpp: blocking(); SFT_KERNELS_GEMM_BLOCKING and set_blocking override) -----------
// AVX-512 (14×32): MC = 4·MR = 56, KC = 256, NC = 1024 at any thread count. KC: the B micro-panel (KC × 32 floats)
// is what every tile of an A block re-reads, and at KC = 512 its 64 KB overflowed the 48 KB L1. NC: the shared
// KC × NC block of B (1 MB) stays in L2 beside a thread's A block (56 × KC). Blockings interleaved in one process
// with torch.matmul (two runs each), against the earlier 56,512,1024 (1 thread) / 56,512,512 (2 threads):
// 1 thread 1024³ 0.95x -> 0.98-1.04x, 2048³ 0.89-0.91x -> 0.92-0.98x; 2 threads 1024³ 0.97-0.99x -> 0.96-1.00x,
// 2048³ 0.94-0.95x -> 0.94-0.99x, 4096³ 0.90x -> 0.93-0.97x.
constexpr int kAvx512MCPanels = 4;
constexpr int64_t kAvx512KC = 256, kAvx512NC = 1024;
// Other ISAs: MC = 8·MR, KC = NC = 512 (not re-tuned).
constexpr int kOtherMCPanels = 8;
constexpr int64_t kOtherKC = 512, kOtherNC = 512;

// A K up to kOnePassKCNum / kOnePassKCDen (2.5) times KC runs in one K pass (gemm_k_passes): a second pass
// re-reads and re-writes every C tile, which cost more than the smaller B micro-panel saved (16384×64×576, a
// 3×3×64 conv's GEMM, 1 thread: 1.05-1.13x -> 0.85-0.91x MKL in two passes of 288; 512³ 1.00-1.01x -> 0.96-0.98x).
constexpr int kOnePassKCNum = 5, kOnePassKCDen = 2;

// ---- GEMM driver policies --------------------------------------------------------------------------------------
// A K slice deeper than this fetches its tiles' C rows before the k loop (KOut::prefetch); a short one cannot hide
// the misses and stalls on them instead (K = 32: 0.66x -> 0.62x PyTorch with them, prefetching the next tile's
// C too).
constexpr int64_t kPrefetchCMinK = 128;

// Reading A in place (rows lda floats apart) beats packing it at any K up to this (direct_a_pays). Packing costs a
// pass over A per column block, which a GEMM with few columns never earns back: in place measured (vs the packed
// path) 1.27-1.29x on 16384x64x576 and 262144x64x576, 1.05-1.08x on 16384x256x576, 1.01-1.05x on 512³ and 640³,
// and K = 32 took as long to copy as to multiply. But L1 sets repeat every 4 KB: when more than half of a tile's
// rows share a set (with the next tile's rows prefetched beside them), they evict each other every k-step,
// 0.88-0.90x on 1024³ and 2048³ (rows 4 and 8 KB apart). A short K reads too little for that to matter.
constexpr int64_t kDirectMaxK = 256;

// Outputs of at least kStreamMinFloats (4 MiB, twice this machine's L2) from GEMMs with K <= kStreamMaxK are
// written with non-temporal stores. Only memory-bound GEMMs gain: a deep K hides the write-allocate reads behind
// its FMAs, and streaming a 512² 3x3 conv's output measured slower (1.06-1.08x -> 1.00-1.04x oneDNN; the stores
// hold line-fill buffers its loads need).
constexpr int64_t kStreamMinFloats = int64_t(1) << 20;
constexpr int64_t kStreamMaxK = 64;

// ---- Fused separable conv (cpu/separable) ---------------------------------------------------------------------
// A work item is a chunk of whole output rows whose depthwise outputs (rows·Q·C floats) fit kSeparableBufferBytes,
// and at least kSeparableMinTiles MR-pixel tiles where rows are narrow, so each B slice is reused across tiles.
constexpr int64_t kSeparableBufferBytes = int64_t(32) << 10;
constexpr int64_t kSeparableMinTiles = 4;
// The fused inverted residual's window of expanded rows per thread (cpu/separable/inverted_residual.cpp): this
// many bytes of rows, at least the rows one chunk of output rows reads plus two chunks' advance, so the rows kept
// for the next chunk move to the window's front once every few chunks. A quarter of this core's L2.
constexpr int64_t kInvertedResidualWindowBytes = int64_t(256) << 10;

// ---- Conv paths (cpu/conv2d) -----------------------------------------------------------------------------------
// NCHW <-> channels-last transposes run in T×T blocks (conv2d.cpp).
constexpr int64_t kTransposeBlock = 32;

// Winograd: output tiles per block such that V and M (A²·TB·(C + K) floats) take about this many bytes (256 KiB,
// measured best); torch.ops.sft_cpu.set_winograd_tiles_per_block overrides.
constexpr int64_t kWinogradBlockBytes = int64_t(1) << 18;

// Taps path: a band's zero-padded input copy takes at most this (half of this machine's L2), and a band spans at
// least this many tiles of virtual rows where the image allows (one-row bands of a 7×7 image had run every tile
// short, 9 rows: the 7- and 2-row kernels; 1.28x -> 1.48x oneDNN for 64→64 at 1 thread).
constexpr int64_t kTapsBandBytes = int64_t(1) << 20;
constexpr int kTapsBandMinTiles = 4;

// Rows path, read in place: from this depth R·S·C (cond_in: 128 k-steps) a tile's C misses hide behind its FMAs
// when fetched first: 0.82-0.89x -> 0.89-0.96x oneDNN (1 thread, malloc setting). Fetching the next tile's
// instead measured 0.86-0.95x.
constexpr int64_t kRowsPrefetchCMinK = 128;

// Thin convs' register tiles: pixels per block for K = 1..4 outputs (few-K; K·pixels accumulators) and for 1..4
// vectors of 16 output channels (few-C; vectors·pixels accumulators), and the output channels per few-C item.
constexpr int kThinFewKPixels[5] = {0, 8, 8, 8, 6};
constexpr int kThinFewCPixels[5] = {0, 12, 12, 8, 6};
constexpr int64_t kThinFewCChannels = 64;
static_assert(kThinFewCChannels == 16 * 4, "a few-C item is at most 4 vectors of 16 channels");

// ---- Sparse conv (cpu/sparse_conv2d) ---------------------------------------------------------------------------
// A tile runs its nonzeros chunk by chunk of input channels, the chunk's taps under the tile (copied into one block)
// taking about kSparseChunkBytes: each output block reloads its accumulators once per chunk, so larger chunks pay
// until the block leaves L1 for L2. Measured on Zen 4, 1 thread, unstructured, tiles of 8 × 16 pixels with tap
// groups (chunks of 24 / 40 / 56 KB): 64→64 3×3 at 128² 80 % sparse 2.9 / 3.2 / 3.0x our direct conv, 90 %
// 3.9 / 4.5 / 4.2x; 128→128 at 64² 80 % 3.3 / 3.6 / 3.5x, 90 % 4.7 / 5.4 / 5.2x (80 KB, once used below 25 % kept:
// 2.8-3.1x at 80 %); at 50 % 30 / 40 / 50 KB gave 1.58 / 1.64 / 1.53x on the first.
constexpr int64_t kSparseChunkBytes = 40 * 1024;

}  // namespace sft
