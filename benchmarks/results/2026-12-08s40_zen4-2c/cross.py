import sys, torch
from sft_kernels.tools.bench_sparse import candidates
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.shapes import resnet50_conv_shapes, sftnet_conv_shapes
th = int(sys.argv[1]); torch.set_num_threads(th)
shapes = [s for s in sftnet_conv_shapes(128) if s.r == 1 and s.stride == 1] + [s for s in resnet50_conv_shapes() if s.r == 1]
print("threads", th)
for s in shapes:
    fns, _ = candidates(s, sparsities=(0.5, 0.6, 0.7, 0.8), patterns=("unstructured", "block"))
    with torch.no_grad():
        t = time_interleaved(fns, repeat=7, min_time=0.05)
    best = min(v for k, v in t.items() if k.startswith("dense"))
    print(f"{s.name:28s} " + " ".join(f"{k.replace('unstructured','u').replace('block','b')} {best / v:4.2f}" for k, v in t.items() if not k.startswith("dense")), flush=True)
