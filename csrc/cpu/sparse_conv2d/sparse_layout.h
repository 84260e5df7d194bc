// The sparse conv's input layout (tiles.h) and output store, shared by the driver (sparse_conv2d.cpp).
#pragma once

#include <cstdint>

namespace sft {
namespace sparse {

// A padded input row: T[c][j] = x[c][h][j − pw] over C × wp floats, zero outside the image.
struct Padded {
  int64_t C, wp, pw;
};

// One image of the input (any strides), with its modulation maps (null: none; strided like x).
struct Source {
  const float* x;
  const float* scale;
  const float* shift;
  int64_t H, W, xs1, xs2, xs3;
};

// Row h of image s (0 <= h < H), modulated, into t (T.C × T.wp floats).
void fill_padded(const Source& s, const Padded& T, int64_t h, float* t, bool avx512);

// Row h of image s as a layout row (below) in one pass, where that is written (AVX-512, stride 1, channels-last
// input); false where it is not (then fill_padded + expand_taps).
bool fill_taps_direct(const Source& s, int64_t h, float* d, int64_t C, int64_t pw, int64_t wq, int64_t S,
                      int64_t sw, int64_t dw, bool avx512);

// A layout row (tiles.h): d[s][c][q] = T[c][q·sw + s·dw] for S taps × C channels × wq columns.
void expand_taps(const float* t, const Padded& T, int64_t S, int64_t sw, int64_t dw, int64_t wq, float* d);

// The output and its epilogue: out = act(acc + bias) + res, strides os* / rs* (res: null for none).
struct Store {
  float* out;
  const float* res;
  const float* bias;
  int64_t K, os0, os1, os2, os3, rs0, rs1, rs2, rs3;
  int act;
  float slope;
};

// cnt pixels (q0 ...) of output row p of image n from acc[k·tw + j].
void store_tile(const Store& st, const float* acc, int tw, int64_t n, int64_t p, int64_t q0, int cnt, bool avx512);

}  // namespace sparse
}  // namespace sft
