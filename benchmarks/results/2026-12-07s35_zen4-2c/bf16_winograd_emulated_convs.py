"""bf16 Winograd F(4×4,3×3) emulated in float64 (V and U rounded to bf16, exact sums) on the shipped teacher's own
3×3 conv inputs (china, 96² LR crop), against the direct bf16 conv: relative RMS and max error against float64."""
import torch, torch.nn.functional as F
from sft_kernels.models.pretrained import pretrained
from sft_kernels.data.datasets import sr_pair
torch.manual_seed(0)
m = pretrained("teacher").eval()
lr, hr = sr_pair("china")
lr = lr.unsqueeze(0) if lr.dim() == 3 else lr
caps = []
convs = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3) and mod.stride == (1, 1) and mod.in_channels >= 16]
def hook(mod, inp, out, name=None): caps.append((name, inp[0].detach().clone(), mod.weight.detach().clone()))
for n, mod in convs[:3] + convs[-4:]:
    mod.register_forward_hook(lambda mm, i, o, n=n: hook(mm, i, o, n))
with torch.no_grad(): m(lr[..., :96, :96] if True else lr)
G = torch.tensor([[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]], dtype=torch.float64)
BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
bf = lambda t: t.float().bfloat16().double()
def wino(x, w, rnd):
    n, c, h, ww = x.shape; k = w.shape[0]
    th, tw = (h + 3) // 4, (ww + 3) // 4
    xp = F.pad(x, (1, 4 * tw + 2 - ww - 1, 1, 4 * th + 2 - h - 1))
    d = xp.unfold(2, 6, 4).unfold(3, 6, 4)  # n c th tw 6 6
    V = BT @ d @ BT.T
    U = G @ w @ G.T  # k c 6 6
    if rnd: V, U = bf(V.float()), bf(U.float())
    M = torch.einsum("nctwij,kcij->nktwij", V, U)
    Y = AT @ M @ AT.T  # n k th tw 4 4
    return Y.permute(0, 1, 2, 4, 3, 5).reshape(n, k, 4 * th, 4 * tw)[:, :, :h, :ww]
for name, x, w in caps:
    x, w = x.double(), w.double()
    ref = F.conv2d(x, w, padding=1)
    direct = F.conv2d(bf(x), bf(w), padding=1)
    wf = wino(x.float().double(), w, False); wb = wino(x, w, True)
    e = lambda y: ((y - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()
    mx = lambda y: ((y - ref).abs().max() / ref.abs().max()).item()
    print(f"{name:28s} C={x.shape[1]} rms rel: bf16 direct {e(direct):.2e}  bf16 wino {e(wb):.2e}  (ratio {e(wb)/e(direct):.1f})  max rel {mx(direct):.1e} / {mx(wb):.1e}")
