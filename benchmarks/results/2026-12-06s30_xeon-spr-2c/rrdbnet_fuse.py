import torch, sys, copy, time, statistics as st
sys.path.insert(0, "benchmarks/models/unseen_cnns")
import sft_kernels
from models import build
torch.set_num_threads(1)
m, shape = build("rrdbnet"); x = torch.randn(shape)
c = copy.deepcopy(m); sft_kernels.convert_(c)
g = sft_kernels.fuse_for_inference(m, x)
fs = {"eager": m, "convert_": c, "fuse_for_inference": g}
with torch.no_grad():
    for f in fs.values():
        for _ in range(10): f(x)
    ts = {k: [] for k in fs}
    for _ in range(9):
        for k, f in fs.items():
            a = time.perf_counter(); f(x); ts[k].append(time.perf_counter() - a)
print({k: round(st.median(v) * 1e3, 1) for k, v in ts.items()}, g.fusion_report[1])
