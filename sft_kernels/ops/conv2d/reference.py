import torch
import torch.nn.functional as F


def bf16_rounded(t):
    """t rounded to bfloat16 (nearest even) and held in its own dtype: the operands of algorithm="bf16"."""
    return t.to(torch.bfloat16).to(t.dtype)


def epilogue(y, activation=None, negative_slope=0.01, residual=None):
    """The fused epilogue of the contract, in order: activation, then residual add (bias is added before)."""
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    elif activation == "relu6":
        y = F.relu6(y)
    elif activation == "silu":
        y = F.silu(y)
    elif activation == "hardswish":
        y = F.hardswish(y)
    elif activation == "gelu":
        y = F.gelu(y)
    elif activation == "gelu_tanh":
        y = F.gelu(y, approximate="tanh")
    elif activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    if residual is not None:
        y = y + residual
    return y


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           activation=None, negative_slope=0.01, residual=None, pixel_shuffle=1, modulation=None):
    """y = act(F.conv2d(x, weight, bias, ...)); y = pixel_shuffle(y, r) if r > 1; y = y + residual, where
    x = input·(scale + 1) + shift for modulation=(scale, shift) (an SFT layer feeding the conv), else input."""
    if modulation is not None:
        input = input * (modulation[0] + 1) + modulation[1]
    y = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return finish(y, activation, negative_slope, residual, pixel_shuffle)


def finish(y, activation=None, negative_slope=0.01, residual=None, pixel_shuffle=1):
    """What follows a conv and its bias in the contract: activation, pixel_shuffle(·, r) if r > 1, residual add."""
    y = epilogue(y, activation, negative_slope)
    if pixel_shuffle > 1:
        y = F.pixel_shuffle(y, pixel_shuffle)
    return y if residual is None else y + residual


# F(4×4, 3×3) (Lavin & Gray): V = Bᵀ d B of each 6×6 input patch, U = G g Gᵀ of each filter, y = Aᵀ (Σ_c U·V) A
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def winograd_bf16_conv(x, weight, padding):
    """The 3×3 stride-1 conv of algorithm="bf16_winograd", no bias: Winograd F(4×4, 3×3) with the transformed input
    tiles V and filters U rounded to bfloat16, their products summed in float32 (x: N, C, H, W float32)."""
    bt, g, at = (torch.tensor(m, dtype=torch.float32) for m in (_BT, _G, _AT))
    n, c, h, w = x.shape
    ph, pw = padding
    p, q = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (p + 3) // 4, (q + 3) // 4
    d = F.pad(x, (pw, 4 * tw + 2 - w - pw, ph, 4 * th + 2 - h - ph)).unfold(2, 6, 4).unfold(3, 6, 4)
    v = bf16_rounded(bt @ d @ bt.T)  # n, c, th, tw, 6, 6
    u = bf16_rounded(g @ weight.float() @ g.T)  # k, c, 6, 6
    m = torch.einsum("nctwij,kcij->nktwij", v, u)
    y = at @ m @ at.T  # n, k, th, tw, 4, 4
    return y.permute(0, 1, 2, 4, 3, 5).reshape(n, -1, 4 * th, 4 * tw)[:, :, :p, :q]
