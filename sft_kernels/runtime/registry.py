"""The backend registry: which backends exist on this machine, what each op runs on, and choosing one for a call.

Backends:
  reference  plain PyTorch (any float dtype incl. float64, any device): the oracle.
  cpu        the C++ extension `sft_kernels._C` (OpenMP, AVX-512/AVX2 chosen at run time).
  triton     Triton kernels: compiled on a CUDA GPU; on a CPU they run through the Triton
             interpreter (TRITON_INTERPRET=1), which is exact but very slow: correctness only.
  cuda       the CUDA extension `sft_kernels._C_cuda` (needs a CUDA build of PyTorch and a GPU).

Selection order for a call: the `backend=` argument, else the SFT_KERNELS_BACKEND environment
variable, else the fastest backend that implements the op for the tensor's device and dtype.

Each op declares what its backends take in one entry (`register_op("conv2d", {"cpu": (torch.float32,), ...})`,
in the op's own folder). Dtypes are any torch dtypes (int8/uint8 activations included); what else an op needs
of its operands (packed weights, layouts) its own checks say.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Optional

import torch

from . import knobs

BACKENDS = ("reference", "cpu", "triton", "cuda")

# Fastest first, per device type. The Triton interpreter is never chosen automatically on a CPU.
_PREFERENCE = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}

# What each backend implements: backend -> {op name -> dtypes it takes}. Filled by register_op from the ops.
_OPS: dict = {b: {} for b in BACKENDS}
FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def register_op(op: str, dtypes_by_backend: dict) -> None:
    """Declare which backends run `op` and in which dtypes ({backend: tuple of torch dtypes})."""
    for backend, dtypes in dtypes_by_backend.items():
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} for op {op!r}; backends are {BACKENDS}")
        _OPS[backend][op] = tuple(dtypes)


def ops() -> dict:
    """{op: {backend: dtypes}} as registered."""
    out: dict = {}
    for backend, table in _OPS.items():
        for op, dtypes in table.items():
            out.setdefault(op, {})[backend] = dtypes
    return out


class BackendUnavailableError(RuntimeError):
    """Raised when a backend is asked for but cannot run here (the message says how to get it)."""


def _import_ext(name: str):
    if os.environ.get("SFT_KERNELS_NO_EXT", "0") == "1":
        return None, "disabled by SFT_KERNELS_NO_EXT=1"
    try:
        return importlib.import_module(name), ""
    except ImportError as e:
        return None, (
            f"{name} is not built ({e}); build it with `pip install --no-build-isolation -e .` "
            "(needs a C++ compiler; `make demo` does this)"
        )


@functools.lru_cache(maxsize=None)
def cpu_ext():
    """The loaded `sft_kernels._C` module, or None (see `status()` for why)."""
    ext = _import_ext("sft_kernels._C")[0]
    mode = env("SFT_KERNELS_WEIGHT_CHECK")
    if ext is not None and mode is not None:
        torch.ops.sft_cpu.set_weight_check(weight_check_mode_index(mode, "SFT_KERNELS_WEIGHT_CHECK"))
    return ext


WEIGHT_CHECK_MODES = ("auto", "version", "full")  # see runtime/weight_check.py


def weight_check_mode_index(mode: str, what: str = "weight check") -> int:
    """The extension's number for a weight-check mode, or a ValueError naming `what` was set wrong."""
    if mode not in WEIGHT_CHECK_MODES:
        raise ValueError(f"{what} must be one of {WEIGHT_CHECK_MODES}, got {mode!r}")
    return WEIGHT_CHECK_MODES.index(mode)


@functools.lru_cache(maxsize=None)
def cuda_ext():
    """The loaded `sft_kernels._C_cuda` module, or None (see `status()` for why)."""
    return _import_ext("sft_kernels._C_cuda")[0] if torch.version.cuda else None


@functools.lru_cache(maxsize=None)
def status() -> dict:
    """{backend: (available, reason)}: reason says what is missing and how to get it."""
    out = {"reference": (True, "plain PyTorch")}
    ext, why = _import_ext("sft_kernels._C")
    out["cpu"] = (ext is not None, "C++ extension loaded" if ext is not None else why)
    if ext is not None and knobs.problems(cpu_ext):
        out["cpu"] = (False, "; ".join(knobs.problems(cpu_ext)))

    from . import triton as _tr

    ok, why = _tr.status()
    if ok and not torch.cuda.is_available():
        why = "no CUDA GPU: Triton kernels run through the Triton interpreter (correctness only, slow)"
    out["triton"] = (ok, why)

    if not torch.version.cuda:
        out["cuda"] = (False, "this PyTorch is a CPU-only build; install a CUDA build of torch and rebuild")
    elif not torch.cuda.is_available():
        out["cuda"] = (False, "no CUDA GPU visible")
    else:
        ext, why = _import_ext("sft_kernels._C_cuda")
        out["cuda"] = (ext is not None, "CUDA extension loaded" if ext is not None else why)
    return out


def available() -> list:
    """Names of the backends that can run on this machine."""
    return [name for name, (ok, _) in status().items() if ok]


def _device_ok(backend: str, device_type: str) -> bool:
    if backend == "reference":
        return True
    if backend == "cpu":
        return device_type == "cpu"
    if backend == "cuda":
        return device_type == "cuda"
    if backend == "triton":  # compiled on a GPU; interpreted on CPU tensors
        return device_type == "cuda" or (device_type == "cpu" and not torch.cuda.is_available())
    return False


def supports(backend: str, op: str, device_type: str, dtype: torch.dtype) -> bool:
    return (
        status().get(backend, (False, ""))[0]
        and _device_ok(backend, device_type)
        and dtype in _OPS.get(backend, {}).get(op, ())
    )


def candidates(op: str, device: torch.device, dtype: torch.dtype) -> list:
    """Backends that can run `op` here for this device and dtype, fastest-first by the static order
    (the ones `backend=None` chooses among; the Triton interpreter is never among them)."""
    return [b for b in _PREFERENCE.get(device.type, ("reference",)) if supports(b, op, device.type, dtype)]


def resolve(backend: Optional[str], op: str, device: torch.device, dtype: torch.dtype) -> str:
    """Pick the backend name for one call of `op`; raise a clear error if the request cannot run."""
    return _resolve(backend, op, device.type, dtype)


# Successful choices by (backend, op, device type, dtype, SFT_KERNELS_BACKEND). An op's Python runs with cold
# caches after a large kernel, so each object it touches costs a DRAM miss: `t.device` (+8 µs), os.environ.get
# of an unset name (+10 µs, a KeyError inside) and the resolution itself made sft.matmul 30-40 µs slower than
# the raw op on a 0.27 ms GEMM, side by side. Errors are not memoized: they raise on every call.
_CHOSEN: dict = {}
_ENV_DATA = getattr(os.environ, "_data", None)  # CPython's bytes-keyed store behind os.environ (POSIX)


def env(name: str) -> Optional[str]:
    """os.environ.get(name) or None, without the KeyError an unset name raises inside os.environ.get."""
    if type(_ENV_DATA) is dict:
        v = _ENV_DATA.get(name.encode())
        return v.decode() if v else None
    return os.environ.get(name) or None


def resolve_for(backend: Optional[str], op: str, t: torch.Tensor) -> str:
    """`resolve()` for the device and dtype of tensor `t`, memoized for eager calls."""
    if torch.compiler.is_compiling() or (backend is not None and type(backend) is not str):
        return _resolve(backend, op, t.device.type, t.dtype)
    key = (backend, op, "cpu" if t.is_cpu else t.device.type, t.dtype, env("SFT_KERNELS_BACKEND"))
    name = _CHOSEN.get(key)
    if name is None:
        name = _CHOSEN[key] = _resolve(backend, op, key[2], t.dtype)
    return name


def _assume_constant_result(fn):
    """`torch.compiler.assume_constant_result` without importing torch._dynamo when nothing has yet: that import
    took 1.3 s and ~900 modules (sympy, triton, torch.distributed) of `import sft_kernels`, and its objects made
    every Python garbage collection in a user's process slower. The decorator only sets this attribute (torch
    2.x), which dynamo reads when it traces a call."""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn


# Under torch.compile the choice is made once at trace time and baked into the graph as a constant.
@_assume_constant_result
def _resolve(backend: Optional[str], op: str, device_type: str, dtype: torch.dtype) -> str:
    knobs.check(cpu_ext)
    device = torch.device(device_type)
    if backend is None:
        backend = env("SFT_KERNELS_BACKEND")
    if backend is None:
        for name in _PREFERENCE.get(device.type, ("reference",)):
            if supports(name, op, device.type, dtype):
                return name
        return "reference"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    ok, why = status()[backend]
    if not ok:
        raise BackendUnavailableError(f"backend {backend!r} is not available here: {why}")
    if op not in _OPS[backend]:
        impl = [b for b in BACKENDS if op in _OPS[b]]
        raise BackendUnavailableError(f"backend {backend!r} does not implement sft.{op}; backends that do: {impl}")
    if not _device_ok(backend, device.type):
        raise BackendUnavailableError(f"backend {backend!r} cannot run sft.{op} on {device.type} tensors")
    if dtype not in _OPS[backend][op]:
        raise TypeError(
            f"backend {backend!r} runs sft.{op} in {[str(d) for d in _OPS[backend][op]]}, got {dtype}; "
            "cast the inputs or use backend='reference'"
        )
    return backend
