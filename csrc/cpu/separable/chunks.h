// How the fused separable conv and the fused inverted residual split their work (shared by separable.cpp and
// inverted_residual.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/engine/config.h"
#include "cpu/engine/pack.h"

namespace sft {

// Work items: chunks of whole output rows of one image. A chunk's depthwise outputs (its pixels × ld floats) fit
// L1 (kSeparableBufferBytes) but span at least kSeparableMinTiles tiles of MR pixels, so narrow images
// (MobileNet's 7- and 14-pixel rows) fill whole tiles and reuse each B slice; fewer where that would leave a
// thread idle. per_image: chunks of an image; rows: output rows of a chunk at most (its buffer's size).
struct RowChunks {
  int64_t per_image, rows;
};
inline RowChunks row_chunks(int64_t N, int64_t P, int64_t Q, int64_t ld, int MR, int64_t threads) {
  const int64_t row_bytes = Q * ld * static_cast<int64_t>(sizeof(float));
  const int64_t rb_want =
      std::max<int64_t>({1, kSeparableBufferBytes / row_bytes, (kSeparableMinTiles * MR + Q - 1) / Q});
  int64_t per_image = (P + std::min(rb_want, P) - 1) / std::min(rb_want, P);
  if (N * per_image % threads != 0 && N * per_image < 8 * threads)  // few chunks: one per thread
    per_image = std::min(P, round_up(per_image, threads));
  return {per_image, (P + per_image - 1) / per_image};
}

// The K-slice depth for a GEMM of depth k: as few slices of at most kc_max as can be, of equal depth (multiples
// of KU).
inline int64_t balanced_kc(int64_t k, int64_t kc_max) {
  const int64_t slices = (k + kc_max - 1) / kc_max;
  return round_up((k + slices - 1) / slices, KU);
}

}  // namespace sft
