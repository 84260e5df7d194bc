// int8 convs with few output channels, pixels in the vector lanes (narrow.cpp).
#pragma once

#include <cstdint>

#include "cpu/qconv2d/input.h"
#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

constexpr int64_t kNarrowMaxK = 8;  // above it the output's per-pixel store outweighs the lanes saved

// One conv's shape, packed weights (the single 32-channel panel of qconv2d_pack) and store.
struct NarrowConv {
  int64_t N, P, Q, K, R, S, sh, dh, dw;
  const int8_t* w;
  const int32_t* comp;  // zx·wsum[k]
  const float* mult;    // x_scale·w_scale[k]
  const float* bias;    // or null
  int act;
  float slope;
  const void* res;  // residual [N·P·Q][K] (of type ty), or null
  Types ty;          // the output's and residual's types
  void* out;         // [N·P·Q][K] of type ty
};

// Whether a conv runs on it: 1..kNarrowMaxK output channels, unit column stride (rows may be strided).
bool narrow_fits(int64_t K, int64_t sw);
// Runs the conv (needs AVX-512 VNNI), reading the input through `in` (padded rows, any layout or dtype).
void run_narrow(const InputRows& in, const NarrowConv& c);

}  // namespace sft::qconv
