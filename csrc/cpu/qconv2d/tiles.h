// The int8 conv's tile kernels (vnni.cpp, amx.cpp) and the fused store they share.
#pragma once

#include <cstdint>

namespace sft::qconv {

constexpr int kNR = 32;  // output channels per packed panel
constexpr int kMR = 14;  // output pixels per VNNI register tile

struct Store {
  const int32_t* comp;  // zx·wsum[k], padded to the panels' width
  const float* mult;    // x_scale·w_scale[k]
  const float* bias;    // or null
  int act;
  float slope;
  const float* res;  // residual rows (pitch ldr), or null
  int64_t ldr;
  float inv_out;  // 1 / out_scale (quantized output)
  int zo;
  bool quant;
  void* out;  // float or uint8 rows of pitch ldo (elements)
  int64_t ldo;
  const int32_t* rows = nullptr;  // store_block: accumulator row i goes to output row rows[i] (< 0: none), not i
  const int64_t* pix = nullptr;   // the VNNI tile's store: pixel i at out + pix[i] elements, not i·ldo (a shuffle)
};

// rows[i]: pixel i's first tap in the padded input; toff[t]: tap t's offset; kg: channel groups of 4 per tap;
// b: the panel's packed weights [tap][kg][32][4]; j0: the panel's first output channel.
void tile_generic(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
                  int64_t j0, int ncols, const Store& s);
void tile_avx2(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
               int64_t j0, int ncols, const Store& s);
void tile_vnni(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
               int64_t j0, int ncols, const Store& s);

// The portable store of accumulators acc [mr][32] (any CPU).
void store_sums(const int32_t* acc, int mr, int64_t j0, int ncols, const Store& s);

// AMX: 32 pixels at a fixed input pitch × one 32-channel panel, channels in chunks of 64 or 32 bytes
// (kg = chunk / 4 · chunks).
bool amx_enable();              // asks the kernel for the tile data state once per process; false if refused
void amx_configure(int chunk);  // loads the tile configuration for chunks of `chunk` (64 or 32) bytes on this thread
void amx_release();
// A block's sums waiting for their store: acc [32 pixels][32 channels] int32, mr pixels, the panel's channels, and
// the Store pointed at the block's first pixel.
struct StoreJob {
  const int32_t* acc;
  int mr;
  int64_t j0;
  int ncols;
  Store s;
};
// block_amx issues the block's tile multiplies; block_amx_store writes its sums. The driver stores the previous
// block between the two, while the tiles multiply (slicing that store into the multiply loop was slower: its byte
// stores held back the tile loads).
void block_amx(const uint8_t* a, int64_t pitch, const int64_t* toff, int64_t ntaps, int64_t chunks, int chunk,
               const int8_t* b);
void block_amx_store(int32_t* acc);
// The store of AVX-512 for a block of accumulators (pitch 32), mr pixels.
void store_block(const int32_t* acc, int mr, int64_t j0, int ncols, const Store& s);

}  // namespace sft::qconv
