"""Per conv, channels_last, bias + ReLU: our float32 conv (Winograd where it pays), the direct bf16 conv and bf16
Winograd, interleaved medians (SFTNet's 3×3 convs and ResNet-50's stride-1 3×3 ones). python bf16_winograd_convs.py 1 2"""
import sys, time, torch
from sft_kernels import ops
from sft_kernels.runtime import registry
registry.cpu_ext()
def bench(fns, rounds=15):
    t = {k: [] for k in fns}
    for _ in range(3):
        for f in fns.values(): f()
    for i in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in t.items()}
shapes = [("trunk 64->64 @128", 64, 64, 128, 1), ("up1 64->256 @128 ps2", 64, 256, 128, 2), ("up2 64->256 @256 ps2", 64, 256, 256, 2),
          ("hr 64->64 @512", 64, 64, 512, 1), ("out 64->3 @512", 64, 3, 512, 1), ("r50 l1 64->64 @56", 64, 64, 56, 1),
          ("r50 l2 128 @28", 128, 128, 28, 1), ("r50 l3 256 @14", 256, 256, 14, 1), ("r50 l4 512 @7", 512, 512, 7, 1)]
for thr in map(int, sys.argv[1:] or ["1"]):
    torch.set_num_threads(thr)
    for name, c, k, h, r in shapes:
        x = torch.randn(1, c, h, h).contiguous(memory_format=torch.channels_last)
        w = torch.randn(k, c, 3, 3) / (9 * c) ** .5; b = torch.randn(k)
        kw = dict(activation="relu", pixel_shuffle=r, backend="cpu")
        with torch.no_grad():
            t = bench({"fp32": lambda: ops.conv2d(x, w, b, 1, 1, **kw),
                       "bf16": lambda: ops.conv2d(x, w, b, 1, 1, algorithm="bf16", **kw),
                       "bf16_wino": lambda: ops.conv2d(x, w, b, 1, 1, algorithm="bf16_winograd", **kw)})
        gf = 2 * c * k * 9 * h * h / 1e9
        print(f"{thr} {name:22s} fp32 {t['fp32']*1e3:8.3f}  bf16 {t['bf16']*1e3:8.3f}  bf16_wino {t['bf16_wino']*1e3:8.3f}  "
              f"wino/fp32 {t['fp32']/t['bf16_wino']:.2f}x  wino/bf16 {t['bf16']/t['bf16_wino']:.2f}x  ({gf/t['bf16_wino']:.0f} eff GFLOP/s)", flush=True)
