"""ResNet-50 with its batch norms unfolded (as a torchvision model arrives), 1 thread, pinned to one core: eager channels_last vs convert_ (live fold) vs convert_(fuse=False) (no fold: the behaviour before the live fold) vs fuse_for_inference, paired medians of 9. Output: resnet50_unfolded_convert.txt."""
import sys, copy, statistics, time, torch
sys.path.insert(0, "/work/main/benchmarks/models")
from bench_resnet50 import build
import sft_kernels
torch.set_num_threads(1)
eager = build(1, fold=False)[0].eval()
x = torch.rand(1, 3, 224, 224)
xcl = x.contiguous(memory_format=torch.channels_last)
conv = copy.deepcopy(eager).to(memory_format=torch.contiguous_format); rep = sft_kernels.convert_(conv)
fused = sft_kernels.fuse_for_inference(copy.deepcopy(eager), x)
nofold = copy.deepcopy(eager).to(memory_format=torch.contiguous_format); sft_kernels.convert_(nofold, fuse=False)
V = {"eager_cl": (eager, xcl), "convert_ (NCHW in)": (conv, x), "convert_(fuse=False) (NCHW in)": (nofold, x), "fuse_for_inference (NCHW in)": (fused, x)}
with torch.no_grad():
    ref = eager(xcl)
    for k, (m, i) in V.items():
        for _ in range(12): y = m(i)
        print(k, "rel err", ((y - ref).abs().max() / ref.abs().max()).item())
    S = {k: [] for k in V}
    for r in range(9):
        for k, (m, i) in V.items():
            t = time.perf_counter(); m(i); S[k].append((time.perf_counter() - t) * 1e3)
b = S["eager_cl"]
for k, v in S.items():
    print(f"{k:30s} {statistics.median(v):7.1f} ms  paired x{statistics.median(bb / vv for bb, vv in zip(b, v)):.2f}")
print(sum(r.action == "fused" for r in rep.rows), "chains folded live")
