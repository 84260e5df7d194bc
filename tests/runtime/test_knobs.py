"""Environment knobs set to values they do not take fail loudly on the first op call, naming the knob and what it
takes, instead of the run going on with another kernel or a wrapped-around size."""
import os
import subprocess
import sys

import pytest

from sft_kernels import backends
from tests.conftest import run_fresh

CALL = """
import torch, sft_kernels
from sft_kernels.runtime import registry
print("cpu:", registry.status()["cpu"])
try:
    sft_kernels.ops.conv2d(torch.randn(1, 8, 12, 12), torch.randn(8, 8, 3, 3), padding=1)
    print("ran")
except ValueError as e:
    print("raised:", e)
"""


@pytest.mark.parametrize("knob, value, says", [
    ("SFT_KERNELS_ISA", "avx521", "avx512 | avx2 | generic"),
    ("SFT_KERNELS_INT8", "tpu", "amx | vnni | avxvnni | avx2 | generic"),
    ("SFT_KERNELS_SPARSE", "neon", "avx512 | avx2 | generic"),
    ("SFT_KERNELS_POOL_MB", "-5", "a whole number of MiB"),
    ("SFT_KERNELS_POOL_MB", "lots", "a whole number of MiB"),
    ("SFT_KERNELS_NO_EXT", "yes", "0 | 1"),
    ("SFT_KERNELS_AUTOTUNE", "off", "0 | 1"),
    ("SFT_KERNELS_WEIGHT_CHECK", "always", "auto | version | full"),
    ("SFT_KERNELS_GEMM_BLOCKING", "56,512", "'MC,KC,NC'"),
])
def test_a_bad_value_fails_the_first_call_and_names_the_knob(knob, value, says):
    proc = run_fresh(CALL, **{knob: value})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"raised: sft_kernels environment: {knob}={value!r} is not valid: it takes {says}" in proc.stdout
    assert "ran" not in proc.stdout
    if "cpu" in backends.available():  # the cpu backend is reported unavailable, and why
        assert f"cpu: (False, \"{knob}={value!r} is not valid" in proc.stdout


@pytest.mark.parametrize("knob, value", [("SFT_KERNELS_POOL_MB", "0"), ("SFT_KERNELS_POOL_MB", "64"),
                                         ("SFT_KERNELS_AUTOTUNE", "0"), ("SFT_KERNELS_GEMM_BLOCKING", "0,256,0"),
                                         ("SFT_KERNELS_WEIGHT_CHECK", "full")])
def test_good_values_run(knob, value):
    proc = run_fresh(CALL, **{knob: value})
    assert proc.returncode == 0 and "ran" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.skipif("cpu" not in backends.available(), reason="cpu backend not built")
def test_a_kernel_this_cpu_cannot_run_fails_with_the_extensions_reason():
    from sft_kernels.ops.qconv2d import cpu

    if cpu.kernel() == "amx":
        pytest.skip("this CPU runs AMX")
    proc = run_fresh(CALL, SFT_KERNELS_INT8="amx")
    assert "raised: sft_kernels environment: SFT_KERNELS_INT8=amx: this CPU or OS does not run AMX" in proc.stdout


def test_info_lists_the_problem():
    proc = subprocess.run([sys.executable, "-m", "sft_kernels.tools.cli", "info"], capture_output=True, text=True,
                          env=dict(os.environ, SFT_KERNELS_ISA="avx521"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "environment: SFT_KERNELS_ISA='avx521' is not valid" in proc.stdout
