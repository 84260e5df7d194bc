// Binds the torch-free CUDA kernels (conv2d.cu) to PyTorch as `torch.ops.sft_cuda.*`, and is the sft_kernels._C_cuda
// module. Built only against a CUDA build of PyTorch (the CPU wheel lacks the c10/cuda headers). The public
// `sft::conv2d` op (Python) lays the tensors out (NHWC input, KRSC weight, channels padded to a multiple of 8 per
// group), applies any SFT modulation to the input, and calls this.
#include <Python.h>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "../common/conv_args.h"
#include "../common/tile_config_list.h"
#include "conv2d.h"

namespace {

void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.device() == x.device() && t.scalar_type() == x.scalar_type(), name,
              " must be on the input's device with its dtype");
}

at::Tensor conv2d_nhwc(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       int64_t activation, double negative_slope, const c10::optional<at::Tensor>& residual,
                       int64_t pixel_shuffle, int64_t config, const c10::optional<at::Tensor>& blk_ptr,
                       const c10::optional<at::Tensor>& blk_idx) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "x must be a contiguous N×H×W×C CUDA tensor");
  TORCH_CHECK(x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16, "x must be float16 or bfloat16");
  TORCH_CHECK(w.dim() == 4 && w.is_contiguous(), "w must be a contiguous K×R×S×Cg tensor");
  check_like(w, x, "w");
  TORCH_CHECK(groups >= 1 && x.size(3) == groups * w.size(3), "x channels must equal groups × w.size(3)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t r = pixel_shuffle, kh = w.size(1), kw = w.size(2);
  const auto pq = sft_cuda::conv_output_hw(x, kh, kw, stride, padding, dilation);
  const int64_t p = pq[0], q = pq[1];
  TORCH_CHECK(r >= 1 && w.size(0) % (r * r) == 0, "pixel_shuffle^2 must divide the output channels");
  auto y = at::empty({x.size(0), p * r, q * r, w.size(0) / (r * r)}, x.options());

  sft_cuda::Conv2dParams prm;
  prm.x = x.data_ptr();
  prm.w = w.data_ptr();
  prm.y = y.data_ptr();
  if (bias) {
    check_like(*bias, x, "bias");
    TORCH_CHECK(bias->is_contiguous() && bias->numel() == w.size(0), "bias must be a contiguous K vector");
    prm.bias = bias->data_ptr();
  }
  if (residual) {
    check_like(*residual, x, "residual");
    TORCH_CHECK(residual->sizes() == y.sizes() && residual->is_contiguous(),
                "residual must be a contiguous tensor shaped like y ", y.sizes());
    prm.residual = residual->data_ptr();
  }
  sft_cuda::set_conv_geometry(prm, x, kh, kw, pq, stride, padding, dilation);
  prm.groups = groups;
  prm.cg = w.size(3);
  prm.k = w.size(0);
  prm.activation = activation;
  prm.negative_slope = static_cast<float>(negative_slope);
  prm.shuffle = r;
  prm.dtype = x.scalar_type() == at::kHalf ? sft_cuda::DType::kHalf : sft_cuda::DType::kBFloat16;
  if (blk_ptr || blk_idx) {  // block-sparse weights: lists made for `config` (sft_kernels/ops/sparse_conv2d/cuda.py)
    TORCH_CHECK(blk_ptr && blk_idx && config >= 0, "blk_ptr and blk_idx go together, with an explicit config");
    for (const at::Tensor* t : {&*blk_ptr, &*blk_idx})
      TORCH_CHECK(t->is_cuda() && t->device() == x.device() && t->scalar_type() == at::kInt && t->dim() == 1 &&
                      t->is_contiguous(), "block lists must be contiguous int32 vectors on the input's device");
    const auto cfg = sft_cuda::tile_config(static_cast<int>(config));
    TORCH_CHECK(cfg.bn > 0, "no such tile config");
    const int64_t ntiles = (w.size(0) / groups + cfg.bn - 1) / cfg.bn;
    TORCH_CHECK(blk_ptr->numel() == groups * ntiles + 1, "blk_ptr must hold groups x N tiles + 1 = ",
                groups * ntiles + 1, " entries for this config");
    prm.blk_ptr = blk_ptr->data_ptr<int>();
    prm.blk_idx = blk_idx->data_ptr<int>();
  }
  const char* why = nullptr;
  const cudaError_t err = sft_cuda::conv2d_launch(prm, config, c10::cuda::getCurrentCUDAStream().stream(), &why);
  TORCH_CHECK(err == cudaSuccess, "sft_cuda.conv2d_nhwc: ", why ? why : cudaGetErrorString(err));
  return y;
}

std::vector<std::string> tile_configs() {
  return sft_cuda::describe_tile_configs(sft_cuda::num_tile_configs(), sft_cuda::tile_config);
}

int64_t choose_tile_config(int64_t n, int64_t p, int64_t q, int64_t k, int64_t groups) {
  sft_cuda::Conv2dParams prm;
  prm.n = n;
  prm.p = p;
  prm.q = q;
  prm.k = k;
  prm.groups = groups;
  return sft_cuda::choose_tile_config(prm);
}

}  // namespace

extern "C" {
PyObject* PyInit__C_cuda(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C_cuda", "sft_kernels CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
}

TORCH_LIBRARY(sft_cuda, m) {
  m.def("conv2d_nhwc(Tensor x, Tensor w, Tensor? bias, int[] stride, int[] padding, int[] dilation, int groups, "
        "int activation, float negative_slope, Tensor? residual, int pixel_shuffle, int config, Tensor? blk_ptr=None, "
        "Tensor? blk_idx=None) -> Tensor");
  m.def("tile_configs() -> str[]", &tile_configs);
  m.def("choose_tile_config(int n, int p, int q, int k, int groups) -> int", &choose_tile_config);
}

TORCH_LIBRARY_IMPL(sft_cuda, CUDA, m) { m.impl("conv2d_nhwc", &conv2d_nhwc); }
