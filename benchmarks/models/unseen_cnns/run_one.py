"""One model, fresh process, 1 thread: eager NCHW/CL vs convert_ (NCHW/CL) vs quantize_ int8 (NCHW).
Usage: python run_one.py NAME [--rounds 9] -> prints report + JSON line 'RESULT {...}'."""
import argparse, copy, gc, json, statistics, sys, time, warnings
import torch
from torch import nn
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from models import build

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("name"); ap.add_argument("--rounds", type=int, default=9)
ap.add_argument("--no-int8", action="store_true")
a = ap.parse_args()
import sft_kernels

warnings.simplefilter("always")
wlog = []
_show = warnings.showwarning
def show(msg, cat, fn, ln, file=None, line=None):
    wlog.append(f"{cat.__name__}: {msg} ({fn}:{ln})"); _show(msg, cat, fn, ln, file, line)
warnings.showwarning = show

model, shape = build(a.name)
torch.manual_seed(123)
x = torch.rand(shape)
x_cl = x.contiguous(memory_format=torch.channels_last)

macs = [0]
def hook(m, i, o):
    if isinstance(m, nn.Conv2d):
        macs[0] += o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    elif isinstance(m, nn.ConvTranspose2d):
        macs[0] += i[0].numel() * m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    elif isinstance(m, nn.Linear):
        macs[0] += o.numel() * m.in_features
layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
with torch.no_grad():
    ref = model(x)
for h in hs: h.remove()
gflops = 2 * macs[0] / 1e9

m_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
errors = {}
variants = {"eager_nchw": (model, x), "eager_cl": (m_cl, x_cl)}

mc = copy.deepcopy(model)
try:
    rep = sft_kernels.convert_(mc)
    print("=== convert_ report ===\n", rep, sep="")
    variants["conv_nchw"] = (mc, x); variants["conv_cl"] = (mc, x_cl)
except Exception as e:
    import traceback; traceback.print_exc(); errors["convert"] = repr(e)

if not a.no_int8:
    mq = copy.deepcopy(model)
    try:
        g = torch.Generator().manual_seed(7)
        calib = [torch.rand(shape, generator=g) for _ in range(4)]
        qrep = sft_kernels.quantize_(mq, sft_kernels.Int8Config(), calibration=calib, progress=False)
        print("=== quantize_ report ===\n", qrep, sep="")
        variants["int8"] = (mq, x)
    except Exception as e:
        import traceback; traceback.print_exc(); errors["quantize"] = repr(e)

def err(y):
    d = (y.float() - ref).abs().max().item()
    return d, d / ref.abs().max().item()

def sqnr(y):
    return 10 * torch.log10(ref.pow(2).sum() / (y.float() - ref).pow(2).sum().clamp_min(1e-30)).item()

out = {"name": a.name, "shape": shape, "gflops": gflops, "errors": errors}
with torch.no_grad():
    for k, (m, inp) in list(variants.items()):
        try:
            for _ in range(3):
                y = m(inp)
            out[f"{k}_err"] = err(y)
            if k == "int8": out["int8_sqnr"] = sqnr(y)
            out[f"{k}_out_cl"] = bool(y.dim() == 4 and y.is_contiguous(memory_format=torch.channels_last)
                                      and not y.is_contiguous())
        except Exception as e:
            import traceback; traceback.print_exc(); errors[k] = repr(e); variants.pop(k)
    # reps so one measurement is ~40 ms
    t0 = time.perf_counter(); model(x); t1 = time.perf_counter() - t0
    reps = max(1, int(0.04 / t1))
    keys = list(variants)
    samples = {k: [] for k in keys}
    gc.collect()
    for r in range(a.rounds + 2):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            m, inp = variants[k]
            t0 = time.perf_counter()
            for _ in range(reps):
                m(inp)
            dt = (time.perf_counter() - t0) / reps * 1e3
            if r >= 2: samples[k].append(dt)
for k in keys:
    out[f"{k}_ms"] = statistics.median(samples[k])
    out[f"{k}_spread"] = (min(samples[k]), max(samples[k]))
out["reps"] = reps
n = len(samples["eager_nchw"])
beste = [min(samples["eager_nchw"][i], samples["eager_cl"][i]) for i in range(n)]
for k in keys:
    out[f"{k}_min"] = min(samples[k])
    out[f"{k}_pairratio"] = statistics.median(beste[i] / samples[k][i] for i in range(n))
if "int8" in samples and "conv_nchw" in samples:
    out["int8_vs_conv_pairratio"] = statistics.median(samples["conv_nchw"][i] / samples["int8"][i] for i in range(n))
out["warnings"] = wlog
print("RESULT " + json.dumps(out))
