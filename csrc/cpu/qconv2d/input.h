// The int8 convs' input copy (qconv2d.cpp), shared by the dense driver and the depthwise kernel (qdepthwise.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace sft::qconv {

// An SFT modulation of the input, x·(scale + 1) + shift, applied as it is quantized (null: none).
struct Mod {
  const float* scale;
  const float* shift;
};

// The zero-point-padded NHWC copy [N][Hp][Wp][Cp] (+ slack for AMX tiles that run past the last row), quantizing a
// float input on the way (clamp(round(x / x_scale) + zx, 0, 255), half to even); channels C..Cp hold zx too.
at::Tensor padded_input(const at::Tensor& x, double x_scale, int64_t zx, int64_t ph, int64_t pw, int64_t Cp,
                        int64_t slack, Mod mod);

}  // namespace sft::qconv
