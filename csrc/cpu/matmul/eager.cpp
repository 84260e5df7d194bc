// sft.matmul's eager call, checked and run in one C function. After a large GEMM the interpreter runs with cold
// caches, and the Python checks and the op's dispatch (OpOverload.__call__) had cost 12-18 us per call.
#include "cpu/matmul/eager.h"

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

#include "cpu/matmul/matmul.h"

namespace sft {

// matmul_cpu(a, b) for two plain CPU float32 2-D tensors (exact torch.Tensor, nothing but a dense CPU tensor's
// dispatch keys, no grad to record) while no Python dispatch or function mode is active; None for anything else.
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
    c = matmul_cpu(a, b);
  }
  return THPVariable_Wrap(std::move(c));
  END_HANDLE_TH_ERRORS
}

}  // namespace sft
