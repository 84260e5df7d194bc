// Binds the torch-free 2:4 sparse tensor-core conv (sparse24.cu) as `torch.ops.sft_cuda.sparse24_conv2d_nhwc` and
// its tile-config queries. Built only against a CUDA build of PyTorch; the module itself (PyInit__C_cuda) is in
// ../conv2d/bindings.cpp. ops/sparse_conv2d/cuda.py packs the weight (values + fragment-order metadata) and calls it.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/conv_args.h"
#include "../common/tile_config_list.h"
#include "sparse24.h"

namespace {

at::Tensor sparse24_conv2d_nhwc(const at::Tensor& x, const at::Tensor& wv, const at::Tensor& meta,
                                const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                int64_t groups, int64_t kh, int64_t kw, int64_t activation, double negative_slope,
                                int64_t config) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "x must be a contiguous N×H×W×C CUDA tensor");
  TORCH_CHECK(x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16, "x must be float16 or bfloat16");
  TORCH_CHECK(wv.dim() == 2 && wv.is_contiguous() && wv.device() == x.device() && wv.scalar_type() == x.scalar_type(),
              "wv must be a contiguous K × a_ld tensor with the input's device and dtype");
  TORCH_CHECK(meta.dim() == 1 && meta.is_contiguous() && meta.device() == x.device() && meta.scalar_type() == at::kInt,
              "meta must be a contiguous int32 vector on the input's device");
  TORCH_CHECK(groups >= 1 && x.size(3) % groups == 0 && wv.size(0) % groups == 0,
              "groups must divide the input channels and the output channels");
  const auto cfg = sft_cuda::sparse24_tile_config(static_cast<int>(config));
  TORCH_CHECK(cfg.bm > 0, "no such tile config: pass the one the metadata was packed for");
  const int64_t k = wv.size(0), kg = k / groups, a_ld = wv.size(1);
  const int64_t words = groups * ((kg + cfg.bm - 1) / cfg.bm) * (2 * a_ld / cfg.bk) * (cfg.bm * cfg.bk / 16);
  TORCH_CHECK(meta.numel() == words, "meta must hold ", words, " words for this weight and config, got ",
              meta.numel());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto pq = sft_cuda::conv_output_hw(x, kh, kw, stride, padding, dilation);
  const int64_t p = pq[0], q = pq[1];
  auto y = at::empty({x.size(0), p, q, k}, x.options());

  sft_cuda::Sparse24Params prm;
  prm.x = x.data_ptr();
  prm.wv = wv.data_ptr();
  prm.meta = reinterpret_cast<const uint32_t*>(meta.data_ptr<int>());
  prm.y = y.data_ptr();
  if (bias) {
    TORCH_CHECK(bias->device() == x.device() && bias->scalar_type() == x.scalar_type() && bias->is_contiguous() &&
                    bias->numel() == k, "bias must be a contiguous K vector with the input's device and dtype");
    prm.bias = bias->data_ptr();
  }
  if (residual) {
    TORCH_CHECK(residual->device() == x.device() && residual->scalar_type() == x.scalar_type() &&
                    residual->sizes() == y.sizes() && residual->is_contiguous(),
                "residual must be a contiguous tensor shaped like y ", y.sizes(), " with the input's dtype");
    prm.residual = residual->data_ptr();
  }
  sft_cuda::set_conv_geometry(prm, x, kh, kw, pq, stride, padding, dilation);
  prm.groups = groups;
  prm.cg = x.size(3) / groups;
  prm.k = k;
  prm.a_ld = a_ld;
  prm.activation = activation;
  prm.negative_slope = static_cast<float>(negative_slope);
  prm.bf16 = x.scalar_type() == at::kBFloat16;
  const char* why = nullptr;
  const cudaError_t err = sft_cuda::sparse24_launch(prm, config, c10::cuda::getCurrentCUDAStream().stream(), &why);
  TORCH_CHECK(err == cudaSuccess, "sft_cuda.sparse24_conv2d_nhwc: ", why ? why : cudaGetErrorString(err));
  return y;
}

std::vector<std::string> sparse24_tile_configs() {
  return sft_cuda::describe_tile_configs(sft_cuda::sparse24_num_tile_configs(), sft_cuda::sparse24_tile_config);
}

int64_t sparse24_choose_tile_config(int64_t n, int64_t p, int64_t q, int64_t k, int64_t groups) {
  sft_cuda::Sparse24Params prm;
  prm.n = n;
  prm.p = p;
  prm.q = q;
  prm.k = k;
  prm.groups = groups;
  return sft_cuda::sparse24_choose_tile_config(prm);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sft_cuda, m) {
  m.def("sparse24_conv2d_nhwc(Tensor x, Tensor wv, Tensor meta, Tensor? bias, Tensor? residual, int[] stride, "
        "int[] padding, int[] dilation, int groups, int kh, int kw, int activation, float negative_slope, "
        "int config) -> Tensor");
  m.def("sparse24_tile_configs() -> str[]", &sparse24_tile_configs);
  m.def("sparse24_choose_tile_config(int n, int p, int q, int k, int groups) -> int", &sparse24_choose_tile_config);
}

TORCH_LIBRARY_IMPL(sft_cuda, CUDA, m) { m.impl("sparse24_conv2d_nhwc", &sparse24_conv2d_nhwc); }
