"""The backend registry under its public name: `sft_kernels.backends.available()`, `status()`, `supports()`,
`BACKENDS`, `BackendUnavailableError` (defined in sft_kernels/runtime/registry.py), `bf16_available()`: whether
the cpu backend computes float32 convs in bfloat16 here (algorithm="bf16", `convert_(model, fp32_precision="bf16")`),
and `bf16_unit()`: on what ("amx" tiles, AVX512-BF16 "vectors", or "none")."""
from .runtime.registry import (BACKENDS, BackendUnavailableError, available, candidates, cpu_ext, cuda_ext, env,
                               ops, register_op, resolve, resolve_for, status, supports)
from .ops.conv2d.cpu import bf16_available, bf16_unit

__all__ = ["BACKENDS", "BackendUnavailableError", "available", "bf16_available", "bf16_unit", "candidates", "cpu_ext",
           "cuda_ext", "env", "ops", "register_op", "resolve", "resolve_for", "status", "supports"]
