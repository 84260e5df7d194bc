// What the int8 entry points (qconv2d.cpp, qdepthwise.cpp) share: the input copy, the output, the modulation maps,
// the per-channel constants and tap offsets.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "cpu/qconv2d/tiles.h"

namespace sft::qconv {

// An SFT modulation of the input, x·(scale + 1) + shift, applied as it is quantized (null: none).
struct Mod {
  const float* scale;
  const float* shift;
};

// clamp(round((x·(scale + 1) + shift)·inv) + fz, 0, 255) of n contiguous floats x (the modulation maps at the same
// index + off; none without mod.scale), round half to even, AVX-512 where the float kernels' ISA is avx512.
void quantize_floats(const float* x, int64_t n, float inv, float fz, uint8_t* q, Mod mod, int64_t off);

// The 14-pixel tile this process's int8 kernel runs (tiles.h; AMX CPUs: the VNNI one).
void run_tile(const uint8_t* const* rows, int mr, const int64_t* toff, int64_t ntaps, int64_t kg, const int8_t* b,
              int64_t j0, int ncols, const Store& s);

// The rows of the zero-point-padded NHWC copy, one at a time (padded_input fills them all; the AMX driver fills
// bands of them right before its tiles read them).
class InputRows {
 public:
  InputRows(const at::Tensor& x, double x_scale, int64_t zx, int64_t ph, int64_t pw, int64_t Cp, Mod mod);
  // Padded row r (0 <= r < Hp; rows outside the image hold zx) of image n: Wp·Cp bytes at dst.
  void fill(int64_t n, int64_t r, uint8_t* dst) const;
  int zero_point() const { return zx_; }
  const int64_t Hp, Wp, Cp;

 private:
  const int64_t C_, H_, W_, ph_, pw_;
  const int zx_;
  const int64_t sn_, sc_, sh_, sw_;
  const bool flt_;
  const float inv_, fz_;
  const float* xf_;
  const uint8_t* xu_;
  const Mod mod_;
  bool v512_ = false, whole_pixels_ = false, few_pixels_ = false, few_float_ = false, rgb_nchw_ = false;
};

// The zero-point-padded NHWC copy [N][Hp][Wp][Cp] (+ slack for AMX tiles that run past the last row), quantizing a
// float input on the way (clamp(round(x / x_scale) + zx, 0, 255), half to even); channels C..Cp hold zx too.
at::Tensor padded_input(const at::Tensor& x, double x_scale, int64_t zx, int64_t ph, int64_t pw, int64_t Cp,
                        int64_t slack, Mod mod);

// A strided conv's padded copy split into phase planes, for the AMX blocks: plane (a, b) holds the padded pixels
// (sh·i + a, sw·j + b), Hq × Wq of them, so every tap of every output pixel is a stride-1 read in one plane and a
// block covers 32 consecutive positions of a Wq-wide grid, where row mode covers one output row (ResNet's 7-wide
// stride-2 layers: 7 of 32 pixels). Only the planes some tap reads are copied (a 1×1 conv: one).
struct Phases {
  Phases(int64_t R, int64_t S, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t Hp, int64_t Wp);
  int64_t sh, sw, Hq, Wq, count = 0;
  std::vector<int> plane;  // plane[a·sw + b]: its place in the copy, or -1 where no tap reads it
  // Tap r·S + s's byte offset from an image's first plane (Cp bytes per pixel).
  std::vector<int64_t> tap_offsets(int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t Cp) const;
};

// The phase planes [N][count][Hq][Wq][Cp] of rows' padded copy (+ slack), positions past the padded image zx.
at::Tensor phased_input(const InputRows& rows, int64_t N, const Phases& ph, int64_t slack,
                        const at::TensorOptions& opts);

// The store's per-channel multipliers x_scale·w_scale[k] and bias (empty without one) of int8 conv `op`, checked and
// zero-padded to Kp channels.
struct ChannelConstants {
  std::vector<float> mult, bias;
};
ChannelConstants channel_constants(const at::Tensor& w_scale, double x_scale, const c10::optional<at::Tensor>& bias,
                                   int64_t K, int64_t Kp, const char* op);

// Tap r·S + s's byte offset in the padded NHWC copy (Wp·Cp bytes per row, Cp per pixel).
std::vector<int64_t> tap_offsets(int64_t R, int64_t S, int64_t dh, int64_t dw, int64_t Wp, int64_t Cp);

// The output and residual types of int8 conv `op`, checked: out_scale > 0 an integer output (uint8, or int8 with
// out_dtype = int8, zero point in that type's range), else float32 (bfloat16 with out_dtype = bfloat16);
// res_scale > 0 a uint8 residual with that scale and zero point, else a float32 one.
Types store_types(double out_scale, int64_t out_zero_point, c10::optional<at::ScalarType> out_dtype,
                  double res_scale, int64_t res_zero_point, const char* op);

// The output of int8 conv `op` (of types ty, [N, K, P, Q] channels_last, from the pool) and its residual (of types
// ty, shaped like the output; undefined without one), checked.
struct ConvOutput {
  at::Tensor out, res;
};
at::ScalarType out_scalar_type(const Types& ty);
ConvOutput conv_output(const at::Tensor& x, int64_t N, int64_t K, int64_t P, int64_t Q, const Types& ty,
                       const c10::optional<at::Tensor>& residual, const char* op);

// The SFT modulation maps of op `op`, checked (both or neither, float32 like a float32 input, shaped like x) and
// laid out as the kernel reads the input, xv = view(x): one offset indexes all three.
std::pair<at::Tensor, at::Tensor> modulation_maps(const at::Tensor& x, const at::Tensor& xv,
                                                  const std::function<at::Tensor(const at::Tensor&)>& view,
                                                  const c10::optional<at::Tensor>& mod_scale,
                                                  const c10::optional<at::Tensor>& mod_shift, const char* op);

}  // namespace sft::qconv
