import torch, time, statistics
torch.backends.quantized.engine = "x86"
import sys; torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
from torch.ao.nn.quantized import Conv2d as QConv2d
c = QConv2d(64, 64, 3, padding=1)
w = torch.randn(64, 64, 3, 3) * 0.05
qw = torch.quantize_per_channel(w, (w.abs().amax((1,2,3)) / 127).double(), torch.zeros(64, dtype=torch.long), 0, torch.qint8)
c.set_weight_bias(qw, torch.randn(64))
c.scale, c.zero_point = 0.05, 128
x = torch.rand(1, 64, 128, 128)
qx = torch.quantize_per_tensor(x, 1/255, 0, torch.quint8).contiguous(memory_format=torch.channels_last)
f32 = torch.nn.Conv2d(64, 64, 3, padding=1)
xcl = x.contiguous(memory_format=torch.channels_last)
import sft_kernels as sk
fn = {"q": lambda: c(qx), "fp32 onednn": lambda: f32(xcl), "sft fp32": lambda: sk.ops.conv2d(xcl, f32.weight, f32.bias, padding=1, backend="cpu")}
with torch.no_grad():
    for k,f in fn.items(): f(); f()
    t = {k: [] for k in fn}
    for _ in range(15):
        for k, f in fn.items():
            s = time.perf_counter(); f(); t[k].append(time.perf_counter() - s)
flops = 2*64*64*9*128*128
for k, v in t.items():
    m = statistics.median(v); print(k, round(m*1e3, 2), "ms", round(flops/m/1e9, 1), "GOP/s")
