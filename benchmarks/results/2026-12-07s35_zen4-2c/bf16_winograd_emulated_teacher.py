"""The shipped teacher with every eligible 3×3 conv emulated in bf16 Winograd (float64, V and U rounded to bf16)
and the others in direct bf16, against float32: PSNR on china and flower (Y, crop 4) and from the float32 output."""
import torch, torch.nn.functional as F
from sft_kernels.models.pretrained import pretrained
from sft_kernels.data.datasets import sr_pair
from sft_kernels.metrics.quality import psnr
G = torch.tensor([[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]], dtype=torch.float64)
BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
bf = lambda t: t.float().bfloat16().double()
def wino(x, w):
    n, c, h, ww = x.shape; k = w.shape[0]
    th, tw = (h + 3) // 4, (ww + 3) // 4
    xp = F.pad(x, (1, 4 * tw + 2 - ww - 1, 1, 4 * th + 2 - h - 1))
    d = xp.unfold(2, 6, 4).unfold(3, 6, 4)
    V = bf(BT @ d @ BT.T); U = bf(G @ w @ G.T)
    out = []
    for r0 in range(0, th, 16):  # chunks of tile rows: memory
        M = torch.einsum("nctwij,kcij->nktwij", V[:, :, r0:r0 + 16], U)
        out.append(AT @ M @ AT.T)
    Y = torch.cat(out, 2)
    return Y.permute(0, 1, 2, 4, 3, 5).reshape(n, k, 4 * th, 4 * tw)[:, :, :h, :ww]
orig = F.conv2d
MODE = ["fp32"]
def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    if MODE[0] == "fp32": return orig(x, w, b, stride, padding, dilation, groups)
    c = w.shape[1]
    if MODE[0] == "wino" and w.shape[2:] == (3, 3) and stride in (1, (1, 1)) and dilation in (1, (1, 1)) and groups == 1 and c >= 16 and padding in (1, (1, 1)):
        y = wino(x.double(), w.double()).float()
        return y if b is None else y + b.view(1, -1, 1, 1)
    if groups == 1 and c >= 16:  # bf16 direct
        return orig(x.bfloat16().float(), w.bfloat16().float(), b, stride, padding, dilation, groups)
    return orig(x, w, b, stride, padding, dilation, groups)
F.conv2d = conv
torch.nn.modules.conv.F.conv2d = conv
m = pretrained("teacher").eval()
for name in ("china", "flower"):
    lr, hr = sr_pair(name)
    lr = lr.unsqueeze(0) if lr.dim() == 3 else lr
    hr = hr.unsqueeze(0) if hr.dim() == 3 else hr
    res = {}
    for mode in ("fp32", "direct", "wino"):
        MODE[0] = mode
        with torch.no_grad(): y = m(lr).clamp(0, 1)
        res[mode] = y
        print(name, mode, f"{psnr(y, hr, crop_border=4, y_channel=True):.4f} dB", f"vs fp32 {psnr(y, res['fp32'], crop_border=4, y_channel=True):.1f} dB", flush=True)
