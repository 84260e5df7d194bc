import os

import pytest
import torch

# Triton kernels run through the interpreter on machines without a GPU; the flag must be set before
# any @triton.jit decorator runs.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from sft_kernels import backends  # noqa: E402


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
