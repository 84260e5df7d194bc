import pytest
import torch
import torch.nn.functional as F

from sft_kernels.ops import separable_conv2d
from sft_kernels.testing import assert_close

from tests.conftest import op_backends


@pytest.mark.parametrize("backend", op_backends("separable_conv2d"))
@pytest.mark.parametrize("n,c,h,w,k,st,pd,dl", [(2, 5, 13, 11, 7, 1, 1, 1), (1, 8, 9, 9, 16, 2, 2, 2),
                                                (1, 3, 7, 7, 4, 1, 0, 1)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_separable_matches_two_convs(backend, n, c, h, w, k, st, pd, dl, layout):
    x = torch.randn(n, c, h, w)
    dw, pw = torch.randn(c, 1, 3, 3), torch.randn(k, c, 1, 1)
    dwb, pwb = torch.randn(c), torch.randn(k)
    xin = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    y = separable_conv2d(xin, dw, pw, dwb, pwb, st, pd, dl, mid_activation="relu", activation="leaky_relu",
                         backend=backend)
    mid = F.relu(F.conv2d(x.double(), dw.double(), dwb.double(), st, pd, dl, groups=c))
    ref = F.leaky_relu(F.conv2d(mid, pw.double(), pwb.double()), 0.01)
    assert_close(y, ref, k=9 * c)


def test_separable_bad_input():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="pw_weight must have shape"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 5, 1, 1))
    with pytest.raises(ValueError, match="channel mismatch"):
        separable_conv2d(x, torch.randn(4, 2, 3, 3), torch.randn(6, 4, 1, 1))
    with pytest.raises(ValueError, match="pw_bias must have 6"):
        separable_conv2d(x, torch.randn(4, 1, 3, 3), torch.randn(6, 4, 1, 1), pw_bias=torch.randn(5))
