// Registers the C++ CPU kernels as torch.library ops in the `sft_cpu` namespace. The public `sft::*` ops
// are defined in Python (so they exist even when this extension is not built) and call these.
#include <Python.h>
#include <torch/library.h>

#include "cpu/gemm.h"

namespace sft {
at::Tensor conv2d_cpu(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, at::IntArrayRef,
                      at::IntArrayRef, at::IntArrayRef, int64_t, int64_t, double, const c10::optional<at::Tensor>&,
                      int64_t, int64_t, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&);
at::Tensor matmul_cpu(const at::Tensor&, const at::Tensor&);
at::Tensor strassen_abc_cpu(const at::Tensor&, const at::Tensor&);

void set_winograd_tiles_per_block(int64_t tiles);

std::string config_op() { return gemm_config(); }
void set_blocking_op(int64_t mc, int64_t kc, int64_t nc) { set_blocking(mc, kc, nc); }
}  // namespace sft

extern "C" {
// `import sft_kernels._C` loads this library, which runs the TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "sft_kernels C++ CPU kernels", -1, nullptr};
  return PyModule_Create(&def);
}
}

TORCH_LIBRARY(sft_cpu, m) {
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups, int activation, float negative_slope, Tensor? residual, int algorithm=0, int pixel_shuffle=1, "
        "Tensor? scale=None, Tensor? shift=None) -> Tensor");
  m.def("matmul(Tensor a, Tensor b) -> Tensor");
  m.def("strassen_abc(Tensor a, Tensor b) -> Tensor");
  m.def("gemm_config() -> str", &sft::config_op);
  m.def("set_gemm_blocking(int mc, int kc, int nc) -> ()", &sft::set_blocking_op);
  m.def("fma_peak_gflops(int iters) -> float", &sft::fma_peak_gflops);
  m.def("set_winograd_tiles_per_block(int tiles) -> ()", &sft::set_winograd_tiles_per_block);
  m.def("buffer_pool_clear() -> ()", &sft::buffer_pool_clear);
  m.def("buffer_pool_idle_bytes() -> int", &sft::buffer_pool_idle_bytes);
  m.def("buffer_pool_set_capacity_mb(int mb) -> int", &sft::buffer_pool_set_capacity_mb);
}

TORCH_LIBRARY_IMPL(sft_cpu, CPU, m) {
  m.impl("conv2d", &sft::conv2d_cpu);
  m.impl("matmul", &sft::matmul_cpu);
  m.impl("strassen_abc", &sft::strassen_abc_cpu);
}
