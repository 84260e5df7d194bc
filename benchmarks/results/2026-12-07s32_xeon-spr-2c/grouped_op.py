"""The fp32 grouped conv (ResNeXt / RegNet shapes) through torch.ops.sft_cpu.conv2d from Python, 1 thread, median of 100."""
import torch, time
torch.set_num_threads(1)
from sft_kernels.runtime import registry
registry.cpu_ext()
op = torch.ops.sft_cpu.conv2d.default
out = []
for C, H, G, st in ((128, 56, 32, 1), (256, 28, 32, 1), (512, 14, 32, 1), (224, 56, 28, 2), (64, 56, 8, 1), (128, 28, 8, 1)):
    x = torch.randn(1, C, H, H).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(C, C // G, 3, 3); b = torch.randn(C)
    f = lambda: op(x, wt, b, [st, st], [1, 1], [1, 1], G, 0, 0.0, None, 0, 1, None, None)
    for _ in range(10): f()
    t = []
    for _ in range(100):
        t0 = time.perf_counter(); f(); t.append(time.perf_counter() - t0)
    t.sort()
    out.append(f"{C}/{G}@{H} s{st}: {t[50]*1e6:.0f}")
print(" | ".join(out))
