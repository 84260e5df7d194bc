# int8 ResNet-50 (fuse_for_inference + quantize_) and torch.ao int8, NCHW and channels_last input, 1 thread (Xeon SPR, 2026-12-06); run from the repository root
import copy, sys, warnings, torch
warnings.simplefilter("ignore")
sys.path.insert(0, "benchmarks/models")
import sft_kernels
from bench_resnet50 import build
from bench_int8_resnet50 import torch_ao_int8
from sft_kernels.tools.benchmark import time_interleaved
torch.set_num_threads(1)
base, _ = build(1, fold=False); base = base.to(memory_format=torch.contiguous_format)
g = torch.Generator().manual_seed(1)
calib = [torch.randn(1, 3, 224, 224, generator=g) for _ in range(8)]
x = torch.randn(1, 3, 224, 224, generator=g); xcl = x.contiguous(memory_format=torch.channels_last)
fused = sft_kernels.fuse_for_inference(copy.deepcopy(base), x, backend="cpu")
sft_kernels.quantize_(fused, sft_kernels.Int8Config(), calibration=calib, progress=False)
ao = torch_ao_int8(base, calib)
with torch.no_grad():
    t = time_interleaved({"ao nchw": lambda: ao(x), "ao cl": lambda: ao(xcl), "sft nchw": lambda: fused(x), "sft cl": lambda: fused(xcl)}, repeat=10, warmup=2)
print({k: round(v * 1e3, 2) for k, v in t.items()})
