// The int8 conv's tile kernels (vnni.cpp, amx.cpp) and the fused store they share.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sft::qconv {

constexpr int kNR = 32;  // output channels per packed panel
constexpr int kMR = 14;  // output pixels per VNNI register tile

// The store's output and residual types, as qconv2d's out_dtype and residual arguments give them (store_types);
// Types{} is a float32 output with a float32 residual.
struct Types {
  bool quant;     // an integer output: uint8, or int8 with s8
  bool s8;        // int8 output: the uint8 one (zo = its zero point + 128) moved by 128
  bool bf16;      // bfloat16 output: the float32 value rounded to nearest even
  bool res_u8;    // a uint8 residual, added as (r − rzp)·rscale
  float inv_out;  // 1 / out_scale (integer output)
  float rscale;
  int zo, rzp;
  int64_t out_size() const { return quant ? 1 : bf16 ? 2 : 4; }  // bytes per output element
  int64_t res_size() const { return res_u8 ? 1 : 4; }
};

// A uint8 output requantized to (scale, zero_point), with a float32 residual if any.
inline Types uint8_out(double scale, int64_t zero_point) {
  return {true, false, false, false, static_cast<float>(1.0 / scale), 0.f, static_cast<int>(zero_point), 0};
}

struct Store {
  const int32_t* comp;  // zx·wsum[k], padded to the panels' width
  const float* mult;    // x_scale·w_scale[k]
  const float* bias;    // or null
  int act;
  float slope;
  const void* res;  // residual rows (pitch ldr elements) of type ty, or null
  int64_t ldr;
  void* out;  // rows of pitch ldo (elements) of type ty
  int64_t ldo;
  Types ty;
  const int32_t* rows = nullptr;  // store_block: accumulator row i goes to output row rows[i] (< 0: none), not i
  const int64_t* pix = nullptr;   // the VNNI tile's store: pixel i at out (and res) + pix[i] elements, not i·ldo
};

// p moved by n elements of `size` bytes (null stays null).
inline const void* advance(const void* p, int64_t n, int64_t size) {
  return p ? static_cast<const char*>(p) + n * size : nullptr;
}
inline void* advance(void* p, int64_t n, int64_t size) { return p ? static_cast<char*>(p) + n * size : nullptr; }

// v, which the compiler may not fuse into the operation that uses it: a dequantized residual is rounded on its
// own, as when it is dequantized before the call (GCC contracts a multiply and an add into an FMA in C++ modes).
template <class V>
inline V rounded(V v) {
  asm("" : "+x"(v));
  return v;
}

// Element k of a residual: float32, or uint8 dequantized ((r − zero point)·scale).
inline float residual_at(const void* res, bool u8, float scale, int zero_point, int64_t k) {
  if (u8) return rounded(static_cast<float>(static_cast<const uint8_t*>(res)[k] - zero_point) * scale);
  return static_cast<const float*>(res)[k];
}
inline float residual_at(const Store& s, int64_t k) {
  return residual_at(s.res, s.ty.res_u8, s.ty.rscale, s.ty.rzp, k);
}

// The bfloat16 bits of v, rounded to nearest even, NaN quiet (c10::BFloat16's rounding).
inline uint16_t bf16_bits(float v) {
  uint32_t u;
  __builtin_memcpy(&u, &v, 4);
  if (v != v) return 0x7FC0;
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// v written in the store's output type at element o of s.out (the portable stores): uint8 requantized (int8: the
// uint8 value moved by 128), bfloat16 rounded to nearest even, or float32.
inline void write_value(const Store& s, int64_t o, float v) {
  if (s.ty.quant) {
    const float q = std::min(255.f, std::max(0.f, std::nearbyint(v * s.ty.inv_out) + float(s.ty.zo)));
    static_cast<uint8_t*>(s.out)[o] = static_cast<uint8_t>(q) ^ (s.ty.s8 ? 0x80 : 0);
  } else if (s.ty.bf16) {
    static_cast<uint16_t*>(s.out)[o] = bf16_bits(v);
  } else {
    static_cast<float*>(s.out)[o] = v;
  }
}

// rows[i]: pixel i's first tap in the padded input; toff[t]: tap t's offset; kg: channel groups of 4 per tap;
// b: the panel's packed weights [tap][kg][32][4]; j0: the panel's first output channel.
void tile_generic(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
                  int64_t j0, int ncols, const Store& s);
void tile_avx2(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
               int64_t j0, int ncols, const Store& s);
// AVX-VNNI at 256 bits; evex: the EVEX encoding of the same instruction (AVX-512 VNNI CPUs, forced for tests).
void tile_avxvnni(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg,
                  const int8_t* b, int64_t j0, int ncols, const Store& s, bool evex);
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
