// sft.matmul's eager call as one Python C function (a method of the sft_kernels._C module).
#pragma once

#include <Python.h>

namespace sft {

// matmul_eager(a, b): matmul_cpu(a, b) for two plain CPU float32 2-D tensors that need nothing from the
// dispatcher, else None (the caller then takes the full path).
PyObject* matmul_eager(PyObject* self, PyObject* const* args, Py_ssize_t nargs);

}  // namespace sft
