// Binds the torch-free int8 conv (qconv2d.cu) as `torch.ops.sft_cuda.qconv2d_nhwc` (and its tile-config queries).
// Built only against a CUDA build of PyTorch; the module itself (PyInit__C_cuda) is in ../conv2d/bindings.cpp. The
// public `sft::qconv2d` op (ops/qconv2d/cuda.py) quantizes a float input, lays the tensors out and calls this.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/conv_args.h"
#include "../common/tile_config_list.h"
#include "qconv2d.h"

namespace {

void check_vector(const at::Tensor& t, const at::Tensor& x, at::ScalarType dtype, int64_t k, const char* name) {
  TORCH_CHECK(t.device() == x.device() && t.scalar_type() == dtype && t.dim() == 1 && t.numel() == k &&
                  t.is_contiguous(), name, " must be a contiguous ", c10::toString(dtype), " vector of ", k,
              " elements on the input's device");
}

at::Tensor qconv2d_nhwc(const at::Tensor& x, const at::Tensor& w, const at::Tensor& wsum, const at::Tensor& mult,
                        const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        int64_t x_zero_point, int64_t activation, double negative_slope, double out_scale,
                        int64_t out_zero_point, int64_t config, c10::optional<at::ScalarType> out_dtype,
                        double res_scale, int64_t res_zero_point) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous() && x.scalar_type() == at::kByte,
              "x must be a contiguous N×H×W×C uint8 CUDA tensor");
  TORCH_CHECK(w.dim() == 4 && w.is_contiguous() && w.scalar_type() == at::kChar && w.device() == x.device(),
              "w must be a contiguous K×R×S×Cg int8 tensor on the input's device");
  TORCH_CHECK(groups >= 1 && x.size(3) == groups * w.size(3), "x channels must equal groups × w.size(3)");
  const int64_t k = w.size(0);
  check_vector(wsum, x, at::kInt, k, "wsum");
  check_vector(mult, x, at::kFloat, k, "mult");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t kh = w.size(1), kw = w.size(2);
  const auto pq = sft_cuda::conv_output_hw(x, kh, kw, stride, padding, dilation);
  const int64_t p = pq[0], q = pq[1];
  const at::ScalarType yt = out_dtype.value_or(out_scale > 0 ? at::kByte : at::kFloat);
  TORCH_CHECK(out_scale > 0 ? (yt == at::kByte || yt == at::kChar) : (yt == at::kFloat || yt == at::kBFloat16),
              "out_dtype must be uint8 or int8 with out_scale > 0, float32 or bfloat16 without, got ", yt);
  auto y = at::empty({x.size(0), p, q, k}, x.options().dtype(yt));

  sft_cuda::QConv2dParams prm;
  prm.x = x.data_ptr<uint8_t>();
  prm.w = w.data_ptr<int8_t>();
  prm.wsum = wsum.data_ptr<int32_t>();
  prm.mult = mult.data_ptr<float>();
  prm.y = y.data_ptr();
  if (bias) {
    check_vector(*bias, x, at::kFloat, k, "bias");
    prm.bias = bias->data_ptr<float>();
  }
  if (residual) {
    const at::ScalarType rt = res_scale > 0 ? at::kByte : at::kFloat;  // res_scale > 0: a uint8 residual
    TORCH_CHECK(residual->device() == x.device() && residual->scalar_type() == rt &&
                    residual->sizes() == y.sizes() && residual->is_contiguous(),
                "residual must be a contiguous ", rt, " tensor shaped like y ", y.sizes());
    if (res_scale > 0)
      prm.residual_u8 = residual->data_ptr<uint8_t>();
    else
      prm.residual = residual->data_ptr<float>();
    prm.res_scale = static_cast<float>(res_scale);
    prm.res_zero_point = static_cast<int>(res_zero_point);
  }
  sft_cuda::set_conv_geometry(prm, x, kh, kw, pq, stride, padding, dilation);
  prm.groups = groups;
  prm.cg = w.size(3);
  prm.k = k;
  prm.x_zero_point = x_zero_point;
  prm.activation = activation;
  prm.negative_slope = static_cast<float>(negative_slope);
  prm.out_scale = static_cast<float>(out_scale);
  prm.out_zero_point = out_zero_point;
  prm.out_dtype = yt == at::kChar ? 1 : yt == at::kBFloat16 ? 2 : 0;
  const char* why = nullptr;
  const cudaError_t err = sft_cuda::qconv2d_launch(prm, config, c10::cuda::getCurrentCUDAStream().stream(), &why);
  TORCH_CHECK(err == cudaSuccess, "sft_cuda.qconv2d_nhwc: ", why ? why : cudaGetErrorString(err));
  return y;
}

std::vector<std::string> qconv2d_tile_configs() {
  return sft_cuda::describe_tile_configs(sft_cuda::qconv2d_num_tile_configs(), sft_cuda::qconv2d_tile_config);
}

int64_t qconv2d_choose_tile_config(int64_t n, int64_t p, int64_t q, int64_t k, int64_t groups) {
  sft_cuda::QConv2dParams prm;
  prm.n = n;
  prm.p = p;
  prm.q = q;
  prm.k = k;
  prm.groups = groups;
  return sft_cuda::qconv2d_choose_tile_config(prm);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sft_cuda, m) {
  m.def("qconv2d_nhwc(Tensor x, Tensor w, Tensor wsum, Tensor mult, Tensor? bias, Tensor? residual, int[] stride, "
        "int[] padding, int[] dilation, int groups, int x_zero_point, int activation, float negative_slope, "
        "float out_scale, int out_zero_point, int config, ScalarType? out_dtype=None, float res_scale=0., "
        "int res_zero_point=0) -> Tensor");
  m.def("qconv2d_tile_configs() -> str[]", &qconv2d_tile_configs);
  m.def("qconv2d_choose_tile_config(int n, int p, int q, int k, int groups) -> int", &qconv2d_choose_tile_config);
}

TORCH_LIBRARY_IMPL(sft_cuda, CUDA, m) { m.impl("qconv2d_nhwc", &qconv2d_nhwc); }
