// Binds the torch-free fused separable conv (separable_conv2d.cu) as `torch.ops.sft_cuda.separable_conv2d_nhwc`.
// Built only against a CUDA build of PyTorch; the module itself (PyInit__C_cuda) and the library's other ops are
// in ../conv2d/bindings.cpp. The public `sft::separable_conv2d` op (Python) lays the tensors out and calls this.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/conv_args.h"
#include "separable_conv2d.h"

namespace {

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name, int64_t numel) {
  TORCH_CHECK(t.device() == x.device() && t.scalar_type() == x.scalar_type(), name,
              " must be on the input's device with its dtype");
  TORCH_CHECK(t.is_contiguous() && t.numel() == numel, name, " must be contiguous with ", numel, " elements");
}

at::Tensor separable_conv2d_nhwc(const at::Tensor& x, const at::Tensor& dw, const c10::optional<at::Tensor>& dw_bias,
                                 const at::Tensor& pw, const c10::optional<at::Tensor>& pw_bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t mid_activation, int64_t activation, double negative_slope,
                                 const c10::optional<at::Tensor>& residual, int64_t pixel_shuffle) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "x must be a contiguous N×H×W×C CUDA tensor");
  const auto st = x.scalar_type();
  TORCH_CHECK(st == at::kHalf || st == at::kBFloat16 || st == at::kFloat, "x must be float16, bfloat16 or float32");
  TORCH_CHECK(dw.dim() == 3 && pw.dim() == 2, "dw must be CM×R×S and pw K×CM");
  const int64_t c = x.size(3), cm = dw.size(0), k = pw.size(0);
  TORCH_CHECK(cm % c == 0 && pw.size(1) == cm, "dw's CM must be a multiple of the input channels and match pw's");
  check_like(dw, x, "dw", dw.numel());
  check_like(pw, x, "pw", pw.numel());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto pq = sft_cuda::conv_output_hw(x, dw.size(1), dw.size(2), stride, padding, dilation);
  const int64_t p = pq[0], q = pq[1];
  const int64_t r = pixel_shuffle;
  TORCH_CHECK(r >= 1 && k % (r * r) == 0, "pixel_shuffle must be >= 1 with its square dividing ", k);
  auto y = at::empty({x.size(0), p * r, q * r, k / (r * r)}, x.options());

  sft_cuda::SeparableParams prm;
  prm.x = x.data_ptr();
  prm.dw = dw.data_ptr();
  prm.pw = pw.data_ptr();
  prm.y = y.data_ptr();
  if (dw_bias) {
    check_like(*dw_bias, x, "dw_bias", cm);
    prm.dw_bias = dw_bias->data_ptr();
  }
  if (pw_bias) {
    check_like(*pw_bias, x, "pw_bias", k);
    prm.pw_bias = pw_bias->data_ptr();
  }
  if (residual) {
    check_like(*residual, x, "residual", y.numel());
    TORCH_CHECK(residual->sizes() == y.sizes(), "residual must be shaped like y ", y.sizes());
    prm.residual = residual->data_ptr();
  }
  sft_cuda::set_conv_geometry(prm, x, dw.size(1), dw.size(2), pq, stride, padding, dilation);
  prm.c = c;
  prm.mult = cm / c;
  prm.k = k;
  prm.mid_activation = mid_activation;
  prm.activation = activation;
  prm.negative_slope = static_cast<float>(negative_slope);
  prm.shuffle = static_cast<int>(r);
  prm.dtype = st == at::kHalf ? sft_cuda::SepDType::kHalf
                              : (st == at::kBFloat16 ? sft_cuda::SepDType::kBFloat16 : sft_cuda::SepDType::kFloat);
  const char* why = nullptr;
  const cudaError_t err = sft_cuda::separable_conv2d_launch(prm, c10::cuda::getCurrentCUDAStream().stream(), &why);
  TORCH_CHECK(err == cudaSuccess, "sft_cuda.separable_conv2d_nhwc: ", why ? why : cudaGetErrorString(err));
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sft_cuda, m) {
  m.def("separable_conv2d_nhwc(Tensor x, Tensor dw, Tensor? dw_bias, Tensor pw, Tensor? pw_bias, int[] stride, "
        "int[] padding, int[] dilation, int mid_activation, int activation, float negative_slope, "
        "Tensor? residual, int pixel_shuffle=1) -> Tensor");
}

TORCH_LIBRARY_IMPL(sft_cuda, CUDA, m) { m.impl("separable_conv2d_nhwc", &separable_conv2d_nhwc); }
