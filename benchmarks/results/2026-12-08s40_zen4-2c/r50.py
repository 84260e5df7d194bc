import sys, torch
from sft_kernels.tools.bench_sparse import candidates
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import resnet50_conv_shapes
th = int(sys.argv[1]); torch.set_num_threads(th)
tot = {}
for s in resnet50_conv_shapes():
    fns, _ = candidates(s, sparsities=(0.9,), patterns=("unstructured",))
    with torch.no_grad():
        t = time_interleaved(fns, repeat=9, min_time=0.1)
    cnt = getattr(s, "count", 1)
    best = min(v for k, v in t.items() if k.startswith("dense"))
    sp = t["unstructured 90%"]
    for k in ("best", "sp"):
        tot[k] = tot.get(k, 0) + cnt * (best if k == "best" else sp)
    print(f"{s.name:40s} x{cnt} best {best*1e3:7.3f} sparse {sp*1e3:7.3f}  {best/sp:5.2f}x", flush=True)
print("sum", tot["best"]*1e3, tot["sp"]*1e3, tot["best"]/tot["sp"])
