"""The backend registry under its public name: `sft_kernels.backends.available()`, `status()`, `supports()`,
`BACKENDS`, `BackendUnavailableError` (defined in sft_kernels/runtime/registry.py)."""
from .runtime.registry import (BACKENDS, BackendUnavailableError, available, candidates, cpu_ext, cuda_ext, env,
                               ops, register_op, resolve, resolve_for, status, supports)

__all__ = ["BACKENDS", "BackendUnavailableError", "available", "candidates", "cpu_ext", "cuda_ext", "env", "ops",
           "register_op", "resolve", "resolve_for", "status", "supports"]
