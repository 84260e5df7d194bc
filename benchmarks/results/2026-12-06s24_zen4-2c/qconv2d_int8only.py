"""ResNet-50 / SFTNet int8 convs: torch.ao vs sft int8 only (no fp32 candidates interleaved), summed x count."""
import sys, torch
from sft_kernels.tools.shapes import CONV_CATALOGS
from sft_kernels.tools.bench_suite import qconv_candidates
from sft_kernels.tools.benchmark import time_interleaved
cat = sys.argv[1]
for th in (1, 2):
    torch.set_num_threads(th)
    ta = to = 0.0
    shapes = CONV_CATALOGS[cat](128) if cat == "sftnet" else CONV_CATALOGS[cat]()
    for s in shapes:
        c = qconv_candidates(s)
        with torch.no_grad():
            t = time_interleaved({k: c[k] for k in ("torch.ao int8", "sft int8")}, repeat=15)
        ta += t["torch.ao int8"] * s.count; to += t["sft int8"] * s.count
        print(f"{th} {s.name:28s} {t['torch.ao int8']*1e3:8.3f} {t['sft int8']*1e3:8.3f} {t['torch.ao int8']/t['sft int8']:6.2f}x", flush=True)
    print(f"{th} {cat} summed (x count) {ta*1e3:8.3f} {to*1e3:8.3f} {ta/to:6.2f}x", flush=True)
