"""PyTorch's own OpInfo sample inputs for nn.functional.conv2d and matmul, run against our ops on every backend
available here (float32; float64 where the backend takes it): unbatched inputs, string padding, zero-size
operands and all. Each result must equal PyTorch's."""
import pytest
import torch

from sft_kernels import backends, ops
from sft_kernels.testing import assert_close

common = pytest.importorskip("torch.testing._internal.common_methods_invocations",
                             reason="PyTorch's OpInfo database needs the expecttest package")
OPINFOS = {o.name: o for o in common.op_db if o.name in ("nn.functional.conv2d", "matmul")}
OURS = {"nn.functional.conv2d": ops.conv2d, "matmul": ops.matmul}
SFT_NAME = {"nn.functional.conv2d": "conv2d", "matmul": "matmul"}


def _cases():
    for name in sorted(OPINFOS):
        for backend in backends.BACKENDS:
            for dtype in (torch.float32, torch.float64):
                if backends.supports(backend, SFT_NAME[name], "cpu", dtype):
                    yield pytest.param(name, backend, dtype, id=f"{SFT_NAME[name]}-{backend}-{str(dtype)[6:]}")


@pytest.mark.parametrize("name,backend,dtype", list(_cases()))
def test_opinfo_samples(name, backend, dtype):
    info, ours = OPINFOS[name], OURS[name]
    samples = list(info.sample_inputs("cpu", dtype))
    assert samples, "OpInfo gave no samples"
    for s in samples:
        d64 = [a.double() if isinstance(a, torch.Tensor) else a for a in (s.input, *s.args)]
        expected = info.op(*d64, **s.kwargs)
        got = ours(s.input, *s.args, **s.kwargs, backend=backend)
        assert got.dtype == dtype and got.shape == expected.shape
        k = s.args[0][0].numel() if name == "nn.functional.conv2d" else s.input.shape[-1]  # reduction length
        assert_close(got, expected, k=k, msg=f"{name} on {backend}: input {tuple(s.input.shape)}, "
                                             f"args {[getattr(a, 'shape', a) for a in s.args]}, kwargs {s.kwargs}")
