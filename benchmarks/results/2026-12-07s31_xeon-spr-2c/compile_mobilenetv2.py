import sys, copy, torch, warnings, time, statistics
warnings.simplefilter("ignore")
sys.path.insert(0, "benchmarks/models")
import bench_mobilenetv2 as B, sft_kernels
torch.set_num_threads(1)
m = B.build().eval()
x = torch.randn(1, 3, 224, 224)
f = sft_kernels.fuse_for_inference(copy.deepcopy(m), x, backend="cpu")
c = copy.deepcopy(m); sft_kernels.convert_(c)
with torch.no_grad():
    cands = {"eager": m, "compile(eager)": torch.compile(copy.deepcopy(m)), "convert_": c, "compile(convert_)": torch.compile(c),
             "fused": f, "compile(fused)": torch.compile(f)}
    ref = m(x)
    for k, fn in cands.items():
        print(k, "rel err %.1e" % ((fn(x) - ref).norm() / ref.norm()).item())
    res = {k: [] for k in cands}
    for _ in range(5):
        for fn in cands.values(): fn(x)
    for _ in range(30):
        for k, fn in cands.items():
            t = time.perf_counter(); fn(x); res[k].append(time.perf_counter() - t)
print({k: round(statistics.median(v) * 1e3, 2) for k, v in res.items()})
