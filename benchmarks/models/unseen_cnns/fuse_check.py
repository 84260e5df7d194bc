"""One model of models.py, 1 thread: eager channels_last vs convert_ vs fuse_for_inference (batch norms and
activations folded), both fed NCHW; paired medians of 15. python fuse_check.py NAME"""
import argparse, copy, statistics, sys, time, warnings
import torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from models import MODELS, build
ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("name", help=f"one of: {' '.join(MODELS)} (or tv:NAME, see survey.py)")
name = ap.parse_args().name
import sft_kernels
torch.set_num_threads(1)
model, shape = build(name)
torch.manual_seed(123); x = torch.rand(shape); xcl = x.contiguous(memory_format=torch.channels_last)
mc = copy.deepcopy(model); sft_kernels.convert_(mc)
with torch.no_grad():
    ref = model(x)
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            mf = sft_kernels.fuse_for_inference(copy.deepcopy(model), x)
        for ww in w: print("warning:", ww.message)
        print("fuse err", ((mf(x) - ref).abs().max() / ref.abs().max()).item())
    except Exception as e:
        print("fuse_for_inference FAILS:", type(e).__name__, str(e)[:300]); mf = None
    V = {"eager_cl": (copy.deepcopy(model).to(memory_format=torch.channels_last), xcl), "convert_": (mc, x)}
    if mf is not None: V["fuse_for_inference"] = (mf, x)
    for m, i in V.values():
        for _ in range(3): m(i)
    s = {k: [] for k in V}
    for r in range(15):
        for k, (m, i) in V.items():
            t0 = time.perf_counter(); m(i); m(i); s[k].append((time.perf_counter() - t0) / 2 * 1e3)
    b = s["eager_cl"]
    ratio = {k: statistics.median(bb / vv for bb, vv in zip(b, v)) for k, v in s.items()}
    print(name, "  ".join(f"{k} {statistics.median(v):.2f} ms ({ratio[k]:.2f}x)" for k, v in s.items()))
