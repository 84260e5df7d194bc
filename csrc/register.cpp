// The sft_kernels._C module: registers the C++ CPU kernels as torch.library ops in the `sft_cpu` namespace (from
// the ops' headers) and exposes sft.matmul's eager entry. The public `sft::*` ops are defined in Python (so they
// exist even when this extension is not built) and call these.
#include <Python.h>

#include <torch/library.h>

#include "cpu/conv2d/conv2d.h"
#include "cpu/conv2d/select.h"
#include "cpu/engine/gemm.h"
#include "cpu/engine/peak.h"
#include "cpu/matmul/eager.h"
#include "cpu/matmul/matmul.h"
#include "cpu/qconv2d/qconv2d.h"
#include "cpu/runtime/buffer_pool.h"
#include "cpu/runtime/layout.h"
#include "cpu/runtime/weight_cache.h"
#include "cpu/separable/separable.h"
#include "cpu/sparse_conv2d/sparse_conv2d.h"
#include "cpu/strassen/strassen.h"

namespace {
PyMethodDef kMethods[] = {
    {"matmul_eager", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sft::matmul_eager)),
     METH_FASTCALL, "matmul_eager(a, b): sft.matmul's eager fast path, or None when a and b need the full path"},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

extern "C" {
// `import sft_kernels._C` loads this library, which runs the TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "sft_kernels C++ CPU kernels", -1, kMethods};
  return PyModule_Create(&def);
}
}

TORCH_LIBRARY(sft_cpu, m) {
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups, int activation, float negative_slope, Tensor? residual, int algorithm=0, int pixel_shuffle=1, "
        "Tensor? scale=None, Tensor? shift=None, ScalarType? out_dtype=None) -> Tensor");
  m.def("matmul(Tensor a, Tensor b) -> Tensor");
  m.def("qconv2d_pack(Tensor w_q) -> Tensor[]", &sft::qconv2d_pack);
  m.def("qconv2d_kernel() -> str", &sft::qconv2d_kernel);
  m.def("qconv2d(Tensor x_q, float x_scale, int x_zero_point, Tensor packed, Tensor wsum, Tensor w_scale, "
        "Tensor? bias, int R, int S, int[] stride, int[] padding, int[] dilation, int activation, "
        "float negative_slope, Tensor? residual, float out_scale, int out_zero_point, Tensor? mod_scale=None, "
        "Tensor? mod_shift=None, int pixel_shuffle=1, ScalarType? out_dtype=None, float res_scale=0., "
        "int res_zero_point=0) -> Tensor");
  m.def("qconv2d_winograd(Tensor x_q, float x_scale, int x_zero_point, Tensor packed, Tensor wsum, Tensor w_scale, "
        "Tensor mult, Tensor? bias, int activation, float negative_slope, Tensor? residual, float out_scale, "
        "int out_zero_point, int pixel_shuffle=1, float res_scale=0., int res_zero_point=0) -> Tensor");
  m.def("qconv2d_depthwise(Tensor x_q, float x_scale, int x_zero_point, Tensor w_q, Tensor w_scale, Tensor? bias, "
        "int[] stride, int[] padding, int[] dilation, int activation, float negative_slope, Tensor? residual, "
        "float out_scale, int out_zero_point, Tensor? mod_scale=None, Tensor? mod_shift=None, "
        "ScalarType? out_dtype=None, float res_scale=0., int res_zero_point=0) -> Tensor");
  m.def("sft_modulation(Tensor x, Tensor mid_s, Tensor w_s, Tensor? b_s, Tensor mid_t, Tensor w_t, Tensor? b_t) "
        "-> Tensor");
  m.def("sft_modulation_bf16(Tensor x, Tensor mid_s, Tensor w_s, Tensor? b_s, Tensor mid_t, Tensor w_t, Tensor? b_t) "
        "-> Tensor");
  m.def("sft_layer_bf16(Tensor x, Tensor cond, Tensor w0_s, Tensor? b0_s, Tensor w0_t, Tensor? b0_t, Tensor w1_s, "
        "Tensor? b1_s, Tensor w1_t, Tensor? b1_t, float negative_slope) -> Tensor");
  m.def("qconv2d_grouped_fits(int C, int K, int groups) -> bool", &sft::qconv2d_grouped_fits);
  m.def("qconv2d_grouped(Tensor x_q, float x_scale, int x_zero_point, Tensor packed, Tensor wsum, Tensor w_scale, "
        "Tensor? bias, int R, int S, int[] stride, int[] padding, int[] dilation, int groups, int activation, "
        "float negative_slope, Tensor? residual, float out_scale, int out_zero_point, Tensor? mod_scale=None, "
        "Tensor? mod_shift=None, ScalarType? out_dtype=None, float res_scale=0., int res_zero_point=0) -> Tensor");
  m.def("qsft_modulation(Tensor x, Tensor mid_s, float s_scale, int s_zero_point, Tensor packed_s, Tensor wsum_s, "
        "Tensor w_scale_s, Tensor? bias_s, Tensor mid_t, float t_scale, int t_zero_point, Tensor packed_t, "
        "Tensor wsum_t, Tensor w_scale_t, Tensor? bias_t, float out_scale, int out_zero_point) -> Tensor");
  m.def("qsft_layer(Tensor x, Tensor cond, float c_scale, int c_zero_point, int activation, float negative_slope, "
        "Tensor packed0_s, Tensor wsum0_s, Tensor w_scale0_s, Tensor? bias0_s, float s_scale, int s_zero_point, "
        "Tensor packed1_s, Tensor wsum1_s, Tensor w_scale1_s, Tensor? bias1_s, Tensor packed0_t, Tensor wsum0_t, "
        "Tensor w_scale0_t, Tensor? bias0_t, float t_scale, int t_zero_point, Tensor packed1_t, Tensor wsum1_t, "
        "Tensor w_scale1_t, Tensor? bias1_t, float out_scale, int out_zero_point) -> Tensor");
  m.def("separable_conv2d(Tensor input, Tensor dw_weight, Tensor? dw_bias, Tensor pw_weight, Tensor? pw_bias, "
        "int[] stride, int[] padding, int[] dilation, int mid_activation, int activation, float negative_slope, "
        "Tensor? residual, int pixel_shuffle=1) -> Tensor");
  m.def("inverted_residual(Tensor input, Tensor ex_weight, Tensor? ex_bias, int ex_activation, Tensor dw_weight, "
        "Tensor? dw_bias, Tensor pw_weight, Tensor? pw_bias, int[] stride, int[] padding, int[] dilation, "
        "int mid_activation, int activation, float negative_slope, Tensor? residual) -> Tensor");
  m.def("sparse_conv2d_pack(Tensor weight, int groups, int block) -> Tensor", &sft::sparse_conv2d_pack);
  m.def("sparse_conv2d_info(Tensor packed) -> int[]", &sft::sparse_conv2d_info);
  m.def("sparse_conv2d_kernel(str want='') -> str", &sft::sparse_conv2d_kernel);
  m.def("sparse_conv2d(Tensor input, Tensor packed, Tensor? bias, int R, int S, int[] stride, int[] padding, "
        "int[] dilation, int activation, float negative_slope, Tensor? residual, Tensor? scale=None, "
        "Tensor? shift=None, int shuffle=1) -> Tensor");
  m.def("strassen_abc(Tensor a, Tensor b) -> Tensor");
  m.def("gemm_config() -> str", &sft::gemm_config);
  m.def("set_gemm_blocking(int mc, int kc, int nc) -> ()", &sft::set_blocking);
  m.def("fma_peak_gflops(int iters) -> float", &sft::fma_peak_gflops);
  m.def("ukernel_ceiling_gflops(int k, int iters) -> float", &sft::ukernel_ceiling_gflops);
  m.def("set_winograd_tiles_per_block(int tiles) -> ()", &sft::set_winograd_tiles_per_block);
  m.def("conv2d_bf16_available() -> bool", &sft::conv2d_bf16_available);
  m.def("conv2d_bf16_unit() -> str", &sft::conv2d_bf16_unit);
  m.def("conv2d_bf16_peak_gflops() -> float", &sft::conv2d_bf16_peak_gflops);
  // The algorithm choice itself, for benchmarks that show what `auto` runs (one rule, in select.cpp).
  m.def("conv2d_winograd_tile(int algorithm, int N, int C, int K, int R, int S, int P, int Q, int[] stride, "
        "int[] dilation, int groups) -> int",
        &sft::winograd_tile);
  m.def("conv2d_direct_path(Tensor x, Tensor weight, int[] stride, int[] dilation, int groups) -> str",
        &sft::conv2d_direct_path);
  m.def("to_channels_last(Tensor x) -> Tensor", &sft::to_channels_last_cpu);
  m.def("to_nchw(Tensor x) -> Tensor", &sft::to_nchw_cpu);
  m.def("buffer_pool_clear() -> ()", &sft::buffer_pool_clear);
  m.def("weight_cache_entries() -> int", &sft::weight_cache_entries);
  m.def("set_weight_check(int mode) -> int", &sft::set_weight_check);
  m.def("trust_weight(Tensor weight, bool trust) -> ()", &sft::trust_weight);
  m.def("buffer_pool_idle_bytes() -> int", &sft::buffer_pool_idle_bytes);
  m.def("buffer_pool_set_capacity_mb(int mb) -> int", &sft::buffer_pool_set_capacity_mb);
}

TORCH_LIBRARY_IMPL(sft_cpu, CPU, m) {
  m.impl("conv2d", &sft::conv2d_cpu);
  m.impl("matmul", &sft::matmul_cpu);
  m.impl("qconv2d", &sft::qconv2d_cpu);
  m.impl("qconv2d_depthwise", &sft::qconv2d_depthwise_cpu);
  m.impl("qconv2d_winograd", &sft::qconv2d_winograd_cpu);
  m.impl("qsft_modulation", &sft::qsft_modulation_cpu);
  m.impl("qsft_layer", &sft::qsft_layer_cpu);
  m.impl("qconv2d_grouped", &sft::qconv2d_grouped_cpu);
  m.impl("sft_modulation", &sft::sft_modulation_cpu);
  m.impl("sft_modulation_bf16", &sft::sft_modulation_bf16_cpu);
  m.impl("sft_layer_bf16", &sft::sft_layer_bf16_cpu);
  m.impl("separable_conv2d", &sft::separable_conv2d_cpu);
  m.impl("inverted_residual", &sft::inverted_residual_cpu);
  m.impl("sparse_conv2d", &sft::sparse_conv2d_cpu);
  m.impl("strassen_abc", &sft::strassen_abc_cpu);
}
