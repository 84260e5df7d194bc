// What the bf16 conv (amx_bf16.cpp) shares with the bf16 SFT modulation (sft_modulation_bf16.cpp): the weight
// packing, the rounding copy of input pixels, and a block's multiplies on AMX tiles or on AVX512-BF16 vectors
// (bf16_vectors.cpp), with the store of its sums.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft::bf16 {

constexpr int kNR = 32;  // output channels per panel
constexpr int kCh = 32;  // input channels per tile row (64 bytes of bf16)

// [K, C, R, S] float32 weights as bf16 panels [ceil(K/32)][R·S][Cp/32][16 channel pairs][32 outputs][2] (zeros past
// C and K; shuffle = r > 1: output channels in PixelShuffle(r)'s sub-pixel order), cached per weight.
at::Tensor packed_weight(const at::Tensor& weight, int64_t Cp, int64_t shuffle);
// The same packing, not cached (weights made on the fly: the bf16 Winograd conv's transformed filters).
at::Tensor pack_weight(const at::Tensor& weight, int64_t Cp, int64_t shuffle);

// n pixels of C float channels (pixel pitch xs; ms / mt: modulation maps strided like x, or null) into rows of Cp
// bf16 channels, zeros past C: x·(ms + 1) + mt rounded to bf16's nearest even.
void fill_pixels(const float* x, int64_t xs, const float* ms, const float* mt, int64_t n, int64_t C, int64_t Cp,
                 uint16_t* dst);

// A block of 32 pixels × one 32-output panel into accumulator tiles 0-3 (Half: outputs 16-31 skipped; tiles 1 and 3
// left as they were): a, the block's first pixel at tap 0 (bf16 elements; tile rows pitch bytes apart), toff the
// taps' offsets (elements), b the panel's packed weights. The thread must have loaded qconv::amx_configure(64).
template <bool Half>
void block_tiles(const uint16_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks,
                 const uint16_t* b);

// The accumulator tiles into acc [32 pixels][32 outputs] (64-byte aligned).
void block_sums(float* acc);

// What multiplies bf16 here: AMX tiles, AVX512-BF16 vectors (vdpbf16ps: AMD Zen 4, Intel Cooper Lake) or nothing.
// SFT_KERNELS_BF16=amx|vectors forces one (an error where this CPU lacks it).
enum class Unit { kNone, kAmx, kVectors };
Unit unit();

// The same block as block_tiles + block_sums on AVX512-BF16 vectors, its sums straight into acc: only the first
// m pixels' (at least; the rows past m are left as they were).
template <bool Half>
void block_vectors(const uint16_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks,
                   const uint16_t* b, float* acc, int m = 32);

// Back-to-back vdpbf16ps on every thread: the vectors' multiply peak, GFLOP/s.
double vectors_peak_gflops();

// A block's sums for a panel of nc outputs into acc on unit(): at least its first m pixels' (vectors compute only
// those, AMX tiles all 32); on AMX the thread must have loaded qconv::amx_configure(64) (begin_thread).
inline void block_for(int nc, const uint16_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks,
                      const uint16_t* b, float* acc, int m = 32) {
  if (unit() == Unit::kVectors)
    return (nc <= 16 ? block_vectors<true> : block_vectors<false>)(a, pitch, toff, ntaps, chunks, b, acc, m);
  (nc <= 16 ? block_tiles<true> : block_tiles<false>)(a, pitch, toff, ntaps, chunks, b);
  block_sums(acc);
}

// A thread's set-up and tear-down around its blocks (the AMX tile configuration; nothing on vectors).
void begin_thread();
void end_thread();

}  // namespace sft::bf16
