// The sparse conv's input layout (tiles.h) and output store, shared by the driver (sparse_conv2d.cpp).
#pragma once

#include <cstdint>

namespace sft {
namespace sparse {

// The vector ISA of the fill, copy and store paths (that of the tile kernels the process runs).
enum Isa { kGeneric, kAvx2, kAvx512 };

// A padded input row: T[c][j] = x[c][h][j − pw] over C × wp floats, zero outside the image (with edges false,
// columns outside [pw, pw + W) are left as they are: one of several runs written into the same row).
struct Padded {
  int64_t C, wp, pw;
  bool edges = true;
};

// One image of the input (any strides), with its modulation maps (null: none; strided like x).
struct Source {
  const float* x;
  const float* scale;
  const float* shift;
  int64_t H, W, xs1, xs2, xs3;
};

// Row h of image s (0 <= h < H), modulated, into t (T.C × T.wp floats).
void fill_padded(const Source& s, const Padded& T, int64_t h, float* t, Isa isa);

// The input pixels that output pixels [j0, j0 + cnt) of a 1×1 conv read (its P × Q output pixels taken as one run,
// rows joined; stride sh, sw; no padding), modulated, as one padded row of T.C × T.wp floats: d[c][j − j0], columns
// [cnt, width) zeroed.
void fill_flat(const Source& s, const Padded& T, int64_t j0, int64_t cnt, int64_t width, int64_t Q, int64_t sh,
               int64_t sw, float* d, Isa isa);

// Part `part` of `parts` of input rows [h0, h1) of image s (C channels, without its modulation maps) prefetched
// into L2.
void prefetch_rows(const Source& s, int64_t C, int64_t h0, int64_t h1, int64_t part, int64_t parts);

// The taps of input channels [c0, c1) under a tile whose first pixel reads column j0 (tiles.h), from U padded
// rows (rows[u]: C × wp floats): d[((c − c0)·U + u)·S + s][j] = rows[u][c·wp + j0 + s·dw + j·sw] for j < vw. d is
// 64-byte aligned.
void copy_taps(const float* const* rows, int64_t U, int64_t wp, int64_t c0, int64_t c1, int64_t S, int64_t j0,
               int64_t sw, int64_t dw, int vw, float* d, Isa isa);

// A map of at most one tile (P·Q <= seg pixels) taken flat: tap (c, r, s) of output pixel p·Q + q reads column
// col + s·dw + q·sw of padded row p·sh + r·dh (rows[], C × wp floats each).
struct FlatTaps {
  int64_t P, Q, R, S, sh, sw, dh, dw, wp, col, seg;
};

// The taps of channels [c0, c1) as seg-pixel vectors: d[((c − c0)·R + r)·S + s][p·Q + q], zero from P·Q on.
void copy_taps_flat(const FlatTaps& f, const float* const* rows, int64_t c0, int64_t c1, float* d, Isa isa);

// The output and its epilogue: out = act(acc + bias) + res, strides os* / rs* (res: null for none); with r > 1,
// PixelShuffle(r) of act(acc + bias) + res, acc's channels in sub-pixel-major order (sparse_conv2d.h).
struct Store {
  float* out;
  const float* res;
  const float* bias;
  int64_t K, os0, os1, os2, os3, rs0, rs1, rs2, rs3;
  int act;
  float slope;
  bool stream;  // full channels-last blocks stored past the caches (stream_pays); store_fence() (gemm.h) after
  int64_t r;
};

// Whether a thread's share of an output of out_bytes is large enough (1.5x its L2) to store it past the caches:
// stored normally it evicts the input rows the tiles reuse (the ring, in L2). Zen 4, 1 thread, 64→64 3×3 at 128²
// (4 MB out): 90 % sparse 3.45 → 2.8 ms, 99.9 % 1.74 → 1.3 ms; four such convs chained with relu (the next conv
// reading the output from memory) 13.1 → 10.8 ms at 90 %, 27.4 → 26.5 at 50 %; at 64² (1 MB out) streaming lost
// 15 %.
bool stream_pays(int64_t out_bytes, int64_t threads);

// cnt pixels (q0 ...) of output row p of image n (of the conv, before any shuffle) from acc[k·ld + j].
void store_tile(const Store& st, const float* acc, int64_t ld, int64_t n, int64_t p, int64_t q0, int cnt,
                Isa isa);

}  // namespace sparse
}  // namespace sft
