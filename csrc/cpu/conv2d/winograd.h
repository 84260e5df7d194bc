// The F(4×4, 3×3) transforms and store that the float32 Winograd conv (winograd.cpp) and its bf16 form
// (winograd_bf16.cpp) share. ξ = 6·i + j numbers the 36 positions of a 6×6 input tile.
#pragma once

#include <cstdint>

namespace sft::wino {

// U[ξ][c][k] = (G g Gᵀ)[ξ] for every (k, c) filter of w (K, C, 3, 3) contiguous.
void filter_transform(const float* w, int64_t K, int64_t C, float* U);

// Bᵀ along one axis of 6 rows of n channels (rows rs apart) into 6 rows ws apart; each group of 8 outputs goes to
// o + (c/8)·ocs (ocs = 8: contiguous). n is a multiple of 8.
void bt_rows(const float* d, int64_t rs, float* o, int64_t ws, int64_t ocs, int64_t n);

// Aᵀ m A of one tile: m(i, j) = m + i·ri + j·rj, 6×6 rows of n channels -> o(a, b) = o + (4a + b)·ldo
// (at_tile: ldo = n).
void at_tile_to(const float* m, int64_t ri, int64_t rj, float* o, int64_t ldo, int64_t n);
void at_tile(const float* m, int64_t ri, int64_t rj, float* o, int64_t n);

// The A×A patch whose top-left pixel is (ih0, iw0) of an H × W image (pixel (ih, iw) at x + base + ih·xs2 + iw·xs3,
// C channels) into d [A·A][Cp]: zeros outside the image and past C; x·(ms + 1) + mt where ms (maps strided like x).
void gather_patch(const float* x, const float* ms, const float* mt, int64_t base, int64_t xs2, int64_t xs3,
                  int64_t ih0, int64_t iw0, int64_t H, int64_t W, int64_t C, int64_t Cp, int A, float* d);

// y[k] = act(t[k] + bias[k]) + res[k] for n channels (bias, res: may be null).
void finish_row(float* y, const float* t, const float* bias, const float* res, int64_t n, int act, float slope);

}  // namespace sft::wino
