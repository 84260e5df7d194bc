// Registers the C++ CPU kernels as torch.library ops in the `sft_cpu` namespace. The public `sft::*` ops
// are defined in Python (so they exist even when this extension is not built) and call these.
#include <Python.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
// torch 2.13's autograd headers use bit-field initializers, a C++20 feature that GCC accepts in C++17 mode (the
// mode torch 2.11 builds and CUDA sources need) with a warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wc++20-extensions"
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#pragma GCC diagnostic pop
#include <torch/library.h>

#include "cpu/engine/gemm.h"

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

namespace {
// sft.matmul's eager call, checked and run in one C function: matmul_cpu(a, b) for two plain CPU float32 2-D
// tensors (exact torch.Tensor, nothing but a dense CPU tensor's dispatch keys, no grad to record) while no Python
// dispatch or function mode is active; None for anything else, which then takes the dispatcher path. After a
// large GEMM the interpreter runs with cold caches, and the Python checks and the op's dispatch
// (OpOverload.__call__) had cost 12-18 us per call.
PyObject* matmul_eager(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 2 || !THPVariable_CheckExact(args[0]) || !THPVariable_CheckExact(args[1])) Py_RETURN_NONE;
  const at::Tensor& a = THPVariable_Unpack(args[0]);
  const at::Tensor& b = THPVariable_Unpack(args[1]);
  // A plain dense CPU tensor's keys and no others: a neg or conj view, a zero tensor, a vmap batch or grad
  // wrapper (functorch) or a Python subclass each add one.
  static const c10::DispatchKeySet kPlain{c10::DispatchKey::CPU, c10::DispatchKey::ADInplaceOrView,
                                          c10::DispatchKey::AutogradCPU, c10::DispatchKey::AutocastCPU};
  auto plain = [](const at::Tensor& t) {
    const c10::DispatchKeySet keys = t.key_set();
    return keys.has(c10::DispatchKey::CPU) && kPlain.isSupersetOf(keys) && t.layout() == at::kStrided &&
           t.scalar_type() == at::kFloat && t.dim() == 2;
  };
  if (!plain(a) || !plain(b) || a.size(1) != b.size(0)) Py_RETURN_NONE;
  if ((a.requires_grad() || b.requires_grad()) && c10::GradMode::is_enabled()) Py_RETURN_NONE;
  if (c10::impl::TorchDispatchModeTLS::any_modes_set() || at::impl::torch_function_mode_enabled()) Py_RETURN_NONE;
  at::Tensor c;
  {
    pybind11::gil_scoped_release no_gil;
    c = sft::matmul_cpu(a, b);
  }
  return THPVariable_Wrap(std::move(c));
  END_HANDLE_TH_ERRORS
}

PyMethodDef kMethods[] = {
    {"matmul_eager", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(matmul_eager)), METH_FASTCALL,
     "matmul_eager(a, b): sft.matmul's eager fast path, or None when a and b need the full path"},
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
        "Tensor? scale=None, Tensor? shift=None) -> Tensor");
  m.def("matmul(Tensor a, Tensor b) -> Tensor");
  m.def("strassen_abc(Tensor a, Tensor b) -> Tensor");
  m.def("gemm_config() -> str", &sft::config_op);
  m.def("set_gemm_blocking(int mc, int kc, int nc) -> ()", &sft::set_blocking_op);
  m.def("fma_peak_gflops(int iters) -> float", &sft::fma_peak_gflops);
  m.def("ukernel_ceiling_gflops(int k, int iters) -> float", &sft::ukernel_ceiling_gflops);
  m.def("set_winograd_tiles_per_block(int tiles) -> ()", &sft::set_winograd_tiles_per_block);
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
  m.impl("strassen_abc", &sft::strassen_abc_cpu);
}
