import torch, time, statistics, warnings
warnings.simplefilter("ignore")
import torch.nn.functional as F
from sft_kernels.ops import conv2d, qconv2d
torch.set_num_threads(1)
def t(fs, reps=31):
    for f in fs.values():
        for _ in range(3): f()
    ts = {k: [] for k in fs}
    for _ in range(reps):
        for k, f in fs.items():
            s = time.perf_counter(); f(); ts[k].append(time.perf_counter() - s)
    return {k: statistics.median(v) * 1e3 for k, v in ts.items()}
for (c, k, h, r) in [(64, 64, 56, 1), (64, 64, 128, 3), (32, 192, 56, 1)]:
    x = torch.randn(1, c, h, h).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(k, c, r, r), torch.randn(k)
    fs = {a or "none": (lambda a=a: conv2d(x, w, b, 1, r // 2, activation=a)) for a in (None, "relu", "silu", "gelu", "gelu_tanh")}
    fs["conv then F.gelu"] = lambda: F.gelu(conv2d(x, w, b, 1, r // 2))
    print(f"fp32 {c}->{k} {r}x{r} @{h}:", "  ".join(f"{k2} {v:.3f}" for k2, v in t(fs).items()))
    xq = (torch.rand(1, c, h, h) * 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
    wq = torch.randint(-127, 128, (k, c, r, r), dtype=torch.int8); ws = torch.rand(k) * 0.01
    fq = {a or "none": (lambda a=a: qconv2d(xq, wq, ws, b, 1, r // 2, input_scale=0.02, input_zero_point=3, activation=a, out_scale=0.05, out_zero_point=10)) for a in (None, "relu", "silu", "gelu", "gelu_tanh")}
    print(f"int8 u8-out {c}->{k} {r}x{r} @{h}:", "  ".join(f"{k2} {v:.3f}" for k2, v in t(fq).items()))
