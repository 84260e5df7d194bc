// The CPU conv's paths, one file each, and what they share. conv2d.cpp lays the tensors out and runs the path
// select.h picks. Every path takes x with unit channel stride (channels-last or a channels-last slice) and writes
// out = act(conv(x, w) + b) + res with out and res already shaped; b and res may be undefined (none).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/engine/ukernel.h"

namespace sft {

// A direct conv's output, residual and bias with its epilogue: tile() is the one-pass KOut (the whole K in one
// call) of rows [0, rows) × channels [j, j + cols) at offset off in the output (pitch ld) and roff in the
// residual (pitch rld).
struct ConvOut {
  float* out;
  const float* res;
  const float* bias;
  int act;
  float slope;
  KOut tile(int64_t off, int64_t ld, int64_t roff, int64_t rld, int64_t j, int rows, int cols) const {
    return KOut{out + off, ld, res ? res + roff : nullptr, rld, bias ? bias + j : nullptr, act, slope, false, true,
                rows, cols};
  }
};

// ---- implicit_gemm.cpp: A packed from the input per block (padding, stride, dilation, groups in the packing) ----
// Any conv; out and res with any strides (channels-last ones take the micro-kernel's direct store). mscale and
// mshift (optional, strided like x): the input is modulated, x·(scale + 1) + shift, as A is packed.
void conv2d_implicit_gemm_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               int64_t groups, int64_t activation, double negative_slope, const at::Tensor& res,
                               at::Tensor& out, const at::Tensor& mscale, const at::Tensor& mshift);
// A conv weight (K, C/groups, R, S) as the GEMM's B operand for kernel `uk`: per group, NR-wide panels
// [Kg/NR][Kpad][NR] with k = (r, s, c) (s_outer: (s, r, c), the stacked-rows order) and Kpad =
// round_up(R·S·C/groups, 8), groups one after another (conv_group_panels floats each). Packed once per weight
// and cached by content (weight_cache.h).
at::Tensor conv_weight_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk, bool s_outer = false);
int64_t conv_group_panels(const at::Tensor& weight, int64_t groups, const UKernel& uk);

// ---- taps.cpp: stride-1 convs read in place from zero-padded input bands (no A packing) ----
// mscale and mshift as above, applied while a band is copied.
void conv2d_taps_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef padding,
                      int64_t activation, double slope, const at::Tensor& res, at::Tensor& out,
                      const at::Tensor& mscale, const at::Tensor& mshift);

// ---- rows.cpp: few-input-channel convs as GEMM tiles read from stacked input rows ----
void conv2d_rows_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out);

// ---- thin.cpp: direct AVX-512 kernels for ≤ 4 output channels or few input channels; out, res: any strides ----
void conv2d_thin_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out);

// ---- winograd.cpp: F(4×4,3×3) (tile 4) or F(2×2,3×3) (tile 2), stride-1 ungrouped 3×3 convs ----
// Dilated ones (shuffle = 1 only) as one undilated conv per sub-grid of dilation[0] × dilation[1].
// out and res: unit channel stride. shuffle = r > 1 writes PixelShuffle(r) of the activated conv straight from
// the output transform (out: N × K/r² × P·r × Q·r), adding res (shaped like out) after the shuffle. mscale and
// mshift as above, applied as tiles are gathered.
// Pixels of the sub-grid start, start + d, ... of an axis of n pixels (the winograd driver's and select.cpp's).
inline int64_t sub_grid_size(int64_t n, int64_t start, int64_t d) { return n > start ? (n - start + d - 1) / d : 0; }
void conv2d_winograd_into(int64_t tile, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                          at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                          const at::Tensor& res, at::Tensor& out, int64_t shuffle, const at::Tensor& mscale,
                          const at::Tensor& mshift);

// ---- winograd_bf16.cpp: algorithm 5, F(4×4,3×3) with V and U rounded to bf16 and fp32 sums; undilated 3×3 ----
// Stride 1, groups 1, float32; out, res, shuffle, mscale and mshift as conv2d_winograd_into's.
void conv2d_winograd_bf16_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b,
                               at::IntArrayRef padding, int64_t activation, double slope, const at::Tensor& res,
                               at::Tensor& out, int64_t shuffle, const at::Tensor& mscale, const at::Tensor& mshift);

// ---- depthwise.cpp: groups = input channels (any channel multiplier), out and res with unit channel stride ----
void conv2d_depthwise_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                           const at::Tensor& res, at::Tensor& out);
// The depthwise rows themselves, for the fused separable conv too: the outputs of `rows` pixels of output row p
// (columns q0 ...) of image xn, bias and activation applied, then res added (row pitch rld; null: none), written
// to d (row pitch ld, channels contiguous).
struct DepthwiseRows {
  int64_t xs1, xs2, xs3, h, w, c, cm, r, s, sh, sw, ph, pw, dh, dw;
  const float* wt;  // the weights as [R·S][C·m] (depthwise_weight_taps)
  const float* bias;
  int act;
  float slope;
  bool vector;  // AVX-512 over 16 channels: multiplier 1, unit channel stride
};
at::Tensor depthwise_weight_taps(const at::Tensor& weight);
DepthwiseRows depthwise_rows_setup(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& wt,
                                   const float* bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int act, float slope, bool avx512);
// A map's channels, height and width with its channel, row and pixel strides (one image; no tensor needed).
struct MapDims {
  int64_t c, h, w, s1, s2, s3;
};
DepthwiseRows depthwise_rows_setup(const MapDims& x, const at::Tensor& weight, const at::Tensor& wt,
                                   const float* bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int act, float slope, bool avx512);
void depthwise_rows(const DepthwiseRows& g, const float* xn, int64_t p, int64_t q0, int rows, float* d, int64_t ld,
                    const float* res, int64_t rld);

// The channel-local convs' driver (depthwise.cpp, grouped.cpp): output rows over the threads, tiles of up to 14
// pixels along each, fn(xn, p, q0, rows, d, ld, res, rld) as depthwise_rows takes them (image xn, output row p from
// column q0, output d and residual res at that pixel, pixel pitches ld and rld; res null without one).
template <class Fn>
void for_each_row_tile(const at::Tensor& x, const at::Tensor& res, at::Tensor& out, const Fn& fn) {
  const int64_t N = x.size(0), P = out.size(2), Q = out.size(3);
  const int64_t os0 = out.stride(0), os2 = out.stride(2), os3 = out.stride(3);
  const float* rp = res.defined() ? res.data_ptr<float>() : nullptr;
  const int64_t rs0 = rp ? res.stride(0) : 0, rs2 = rp ? res.stride(2) : 0, rs3 = rp ? res.stride(3) : 0;
  float* op = out.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  constexpr int64_t kTile = 14;
  at::parallel_for(0, N * P, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / P, p = row % P;
      for (int64_t q0 = 0; q0 < Q; q0 += kTile)
        fn(xp + n * x.stride(0), p, q0, static_cast<int>(std::min(kTile, Q - q0)), op + n * os0 + p * os2 + q0 * os3,
           os3, rp ? rp + n * rs0 + p * rs2 + q0 * rs3 : nullptr, rs3);
    }
  });
}

// ---- grouped.cpp: Cg = K / groups = C / groups of 2, 4, 8, 16 or 32 on AVX-512; out, res: unit channel stride ----
bool grouped_fits(int64_t C, int64_t K, int64_t groups);
void conv2d_grouped_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                         const at::Tensor& res, at::Tensor& out);

// ---- amx_bf16.cpp: algorithm 4, inputs and weights rounded to bf16, fp32 sums on AMX tiles; groups = 1 ----
// out and res: unit channel stride; mscale and mshift as above, applied as the input is rounded. shuffle = r > 1
// writes PixelShuffle(r) of the activated conv (out: N × K/r² × P·r × Q·r, K/r² a multiple of 32), adding res
// (shaped like out) after the shuffle.
void conv2d_bf16_into(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& b, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, int64_t activation, double slope,
                      const at::Tensor& res, at::Tensor& out, const at::Tensor& mscale, const at::Tensor& mshift,
                      int64_t shuffle);

// ---- sft_modulation.cpp: what its float32 and bf16 forms share ----
// A map [N, C, H, W] as rows of pixels, channels contiguous at one pitch (*pitch): in place where it already is (a
// channel slice of a channels_last map), else a channels_last copy.
at::Tensor pixel_rows(const at::Tensor& mid, int64_t* pitch);
// Their argument checks (error messages name `op`).
void check_sft_modulation(const char* op, const at::Tensor& x, const at::Tensor& mid_s, const at::Tensor& w_s,
                          const c10::optional<at::Tensor>& b_s, const at::Tensor& mid_t, const at::Tensor& w_t,
                          const c10::optional<at::Tensor>& b_t);

// ---- modulate.cpp ----
// dst[c] = x[c]·(scale[c] + 1) + shift[c]: SFT modulation of a conv input, fused into its packing or band copy.
void modulate_run(float* dst, const float* x, const float* scale, const float* shift, int64_t n);

}  // namespace sft
