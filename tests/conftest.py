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
