import os
import subprocess
import sys

import pytest
import torch

# Triton kernels run through the interpreter on machines without a GPU; the flag must be set before
# any @triton.jit decorator runs.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from sft_kernels import backends  # noqa: E402


def run_fresh(code: str, **env) -> subprocess.CompletedProcess:
    """`code` run by this Python in a fresh process with `env` added to the environment (the kernels a process runs,
    SFT_KERNELS_ISA / SFT_KERNELS_INT8, are chosen once per process)."""
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=120)


def int8_kernels() -> list:
    """The int8 kernels this CPU can be forced to run (SFT_KERNELS_INT8), its best first; none without the
    extension."""
    if "cpu" not in op_backends("qconv2d", torch.uint8):
        return []
    from sft_kernels.ops.qconv2d import cpu

    order = ["amx", "vnni", "avxvnni", "avx2", "generic"]
    return order[order.index(cpu.kernel()):]


def run_with_int8_kernel(kernel: str, code: str) -> None:
    """Runs `code` in a fresh process whose int8 kernel is forced to `kernel` (chosen once per process); fails with
    the process's error if it does."""
    proc = run_fresh(code, SFT_KERNELS_INT8=kernel)
    assert proc.returncode == 0, proc.stderr[-2000:]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def op_backends(op, dtype=torch.float32, device="cpu"):
    """Every backend that can run `op` here for this dtype (the sweep runs each against the reference)."""
    return [b for b in backends.BACKENDS if backends.supports(b, op, device, dtype)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
