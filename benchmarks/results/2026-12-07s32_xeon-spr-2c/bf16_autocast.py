"""SFTNet (shipped teacher, 1×3×128×128 NCHW) under torch.autocast("cpu", torch.bfloat16), as a user would try bf16
on an AMX CPU: eager channels_last, and our converted model (whose convs then leave our fp32 kernels), beside their
fp32 runs; interleaved medians of 5, and the output's PSNR against the fp32 eager output."""
import sys, time, copy, statistics, torch
import sft_kernels
from sft_kernels.models import sftnet
from sft_kernels.train.export import pretrained
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
model = pretrained("teacher").eval()
x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
eager = copy.deepcopy(model).to(memory_format=torch.channels_last)
conv = copy.deepcopy(model); sft_kernels.convert_(conv)
xcl = x.contiguous(memory_format=torch.channels_last)
runs = {"eager fp32 CL": lambda: eager(xcl), "sft fp32 (NCHW in)": lambda: conv(x)}
def bf16(f):
    def g():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return f()
    return g
runs["eager bf16 autocast CL"] = bf16(lambda: eager(xcl))
runs["sft converted, bf16 autocast"] = bf16(lambda: conv(x))
with torch.no_grad():
    ref = eager(xcl).float()
    outs = {k: f().float() for k, f in runs.items()}
    for f in runs.values(): f()
    t = {k: [] for k in runs}
    for _ in range(5):
        for k, f in runs.items():
            t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
for k in runs:
    mse = ((outs[k] - ref) ** 2).mean().item()
    psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-20))).item()
    print(f"{torch.get_num_threads()} thr  {k:32s} {statistics.median(t[k]) * 1e3:8.1f} ms   vs fp32 eager {psnr:6.1f} dB")
