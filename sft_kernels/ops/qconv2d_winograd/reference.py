"""The integer reference of sft.qconv2d_winograd, the transforms and the calibration of the input multipliers.

F(2×2, 3×3): a 4×4 input tile d gives v = Bᵀ(d − zx)B (exact integers, |v| ≤ 4·255), requantized per position p to
q = clamp(⌊(v·mult[p] + 2¹⁴) / 2¹⁵⌋, −128, 127); the weights g (3×3) give u = G g Gᵀ, quantized per (position,
output channel) symmetric; the 2×2 outputs are Aᵀ M A of M = Σ_c q·u_q · x_scale·u_scale·2¹⁵/mult."""
import torch
import torch.nn.functional as F

from ..conv2d.reference import epilogue
from ..qconv2d.reference import quantize

POSITIONS = 16
BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
Q15 = 32768


def mult_ok(mult: torch.Tensor) -> bool:
    """Whether `mult` holds the 16 Q15 input multipliers, each in [1, 2¹⁵ − 1]."""
    return mult.numel() == POSITIONS and bool(((mult >= 1) & (mult <= Q15 - 1)).all())


def winograd_weight(w: torch.Tensor) -> tuple:
    """(u_q int8 [16, K, C], u_scale float32 [16, K]) of a float 3×3 weight [K, C, 3, 3] (for an int8 conv: its
    dequantized weight): u = G w Gᵀ, symmetric int8 per (position, output channel)."""
    if w.dim() != 4 or tuple(w.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_weight needs a [K, C, 3, 3] weight, got shape {tuple(w.shape)}")
    u = (G @ w.detach().to(torch.float64).cpu() @ G.T).permute(2, 3, 0, 1).reshape(POSITIONS, w.shape[0], w.shape[1])
    amax = u.abs().amax(2)
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax)).to(torch.float32)
    u_q = torch.clamp(torch.round(u / scale.double().unsqueeze(2)), -127, 127).to(torch.int8)
    return u_q.to(w.device), scale.to(w.device)


def input_tiles(x_q: torch.Tensor, zero_point: int) -> torch.Tensor:
    """v = Bᵀ(d − zx)B of every 4×4 tile (stride 2, padding 1, tiles past an odd edge padded too) as float64
    [N, C, tP, tQ, 16] (exact integers)."""
    n, c, h, w = x_q.shape
    tp, tq = (h + 1) // 2, (w + 1) // 2
    d = F.pad(x_q.to(torch.float64) - zero_point, (1, 2 * tq + 1 - w, 1, 2 * tp + 1 - h))
    t = d.unfold(2, 4, 2).unfold(3, 4, 2)
    return (BT @ t @ BT.T).reshape(n, c, tp, tq, POSITIONS)


def requantize_tiles(v: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """q = clamp(⌊(v·mult + 2¹⁴) / 2¹⁵⌋, −128, 127) (vpmulhrsw, then a saturating narrow), float64."""
    return torch.clamp(torch.floor((v * mult.to(torch.float64) + Q15 // 2) / Q15), -128, 127)


def qconv2d_winograd(x_q, x_scale, x_zero_point, u_q, u_scale, mult, bias=None, residual=None, activation=None,
                     negative_slope=0.01, out_scale=0.0, out_zero_point=0):
    """The conv in float64 with exact integer sums (see the module docstring); out_scale > 0 requantizes to uint8.
    A float x_q is quantized first."""
    if x_q.is_floating_point():
        x_q = quantize(x_q, x_scale, x_zero_point)
    n, _, h, w = x_q.shape
    q = requantize_tiles(input_tiles(x_q, x_zero_point), mult)
    acc = torch.einsum("pkc,nctsp->nktsp", u_q.to(torch.float64), q)
    m32 = (u_scale.to(torch.float64) * (x_scale * Q15 / mult.to(torch.float64).view(-1, 1))).to(torch.float32)
    m = acc * m32.to(torch.float64).T.reshape(1, -1, 1, 1, POSITIONS)
    tp, tq = m.shape[2], m.shape[3]
    y = AT @ m.reshape(*m.shape[:4], 4, 4) @ AT.T  # n k tP tQ 2 2
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, u_q.shape[1], 2 * tp, 2 * tq)[..., :h, :w]  # k explicit: n may be 0
    if bias is not None:
        y = y + bias.to(torch.float64).view(1, -1, 1, 1)
    y = epilogue(y, activation, negative_slope, None if residual is None else residual.to(torch.float64))
    return quantize(y, out_scale, out_zero_point) if out_scale > 0 else y


def mult_for_range(top: torch.Tensor) -> torch.Tensor:
    """The 16 positions' Q15 multipliers (int32 [16]) for transformed values up to `top` [16] (in input steps): per
    position the largest that keeps ±top within int8 (2¹⁵ − 1, exact, where every value fits)."""
    top = torch.as_tensor(top, dtype=torch.float64).reshape(POSITIONS).clamp(min=1.0)
    return torch.floor((127.5 * Q15 - 1) / top).clamp(1, Q15 - 1).to(torch.int32)  # round-half-up(top·m/2¹⁵) ≤ 127


def calibrate_mult(samples, zero_point: int, max_values: int = 1 << 22) -> torch.Tensor:
    """The 16 positions' Q15 multipliers (int32 [16]) for inputs like `samples` (uint8 maps [N, C, H, W] quantized with
    zero point `zero_point`): per position, the largest that keeps its largest |v| within int8. No clipping: an MSE
    choice over clip fractions (the usual observer) clipped the rare large values of edges and cost SFTNet 0.06 dB more
    on china (−0.071 against −0.010 dB, every 3×3 conv in the Winograd form). At most `max_values` values per position
    are read (evenly strided)."""
    vs = [input_tiles(s, zero_point).reshape(-1, POSITIONS) for s in samples]
    v = torch.cat(vs).T  # 16 × values
    if v.shape[1] > max_values:
        v = v[:, ::-(-v.shape[1] // max_values)]
    return mult_for_range(v.abs().amax(1))


def tile_range(x: torch.Tensor, scale: float, zero_point: int, chunk: int = 8) -> torch.Tensor:
    """Per position, the largest |v| over the tiles of a float map x [N, C, H, W] quantized with (scale, zero_point)
    as the kernels quantize it: float64 [16] in input steps, exactly what calibrate_mult reads of the uint8 map, but
    `chunk` channels at a time (a whole map's tiles take 4× its bytes), so quantize_ keeps 16 numbers per conv
    instead of its calibration inputs."""
    top = torch.zeros(POSITIONS, dtype=torch.float64)
    bt = BT.to(torch.float32)
    n, c, h, w = x.shape
    tp, tq = (h + 1) // 2, (w + 1) // 2
    for c0 in range(0, c, chunk):
        d = quantize(x[:, c0:c0 + chunk].detach().cpu(), scale, zero_point).to(torch.float32) - zero_point
        d = F.pad(d, (1, 2 * tq + 1 - w, 1, 2 * tp + 1 - h))
        v = (bt @ d.unfold(2, 4, 2).unfold(3, 4, 2) @ bt.T).reshape(-1, POSITIONS)  # integers, exact in float32
        top = torch.maximum(top, v.abs().amax(0).double())
    return top
