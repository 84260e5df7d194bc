"""ResNet-50 (v1.5) int8 end to end, 1×3×224×224, against what users would pick instead: PyTorch's own int8 path
(torch.ao FX graph-mode post-training quantization with the x86 backend: oneDNN / FBGEMM kernels, AMX where the CPU
has it), beside eager fp32 and our fp32 conversion, side by side in one process, interleaved medians.

Every model gets the same ordinary NCHW float32 tensor (eager fp32 also channels_last, its faster layout). The int8
models start from the same float model with its batch norms unfolded (each folds them itself), are calibrated on
the same 8 random images, quantize the convs and the classifier per channel, and keep activations uint8 between
convs where their schemes allow. Ours twice: `quantize_` on the model as it is (its Python forward keeps the
residual adds and the ReLUs after them in float), and `fuse_for_inference` (a traced copy whose convs take the
residual adds) then `quantize_`, where every map between blocks is uint8 as in torch.ao's. Weights are random
(seeded): speed does not depend on them, and the output's relative error against fp32 (max |diff| / max |fp32|)
says how much each quantization moved it.
Run: python benchmarks/models/bench_int8_resnet50.py [--threads 1 2] [--repeat 10] [-o out.json]
"""
import argparse
import copy
import json
import os
import sys
import warnings

import torch

import sft_kernels
from sft_kernels.metrics import conv_macs
from sft_kernels.tools.benchmark import model_table, time_models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_resnet50 import build  # noqa: E402  (the same ResNet-50 as the fp32 benchmark)


def torch_ao_int8(model, calib):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (calib[0],))
        with torch.no_grad():
            for x in calib:
                prepared(x)
        return convert_fx(prepared)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    base, _ = build(1, fold=False)
    base = base.to(memory_format=torch.contiguous_format)
    gen = torch.Generator().manual_seed(1)
    calib = [torch.randn(1, 3, 224, 224, generator=gen) for _ in range(8)]
    x = torch.randn(1, 3, 224, 224, generator=gen)  # NCHW, as users pass an image
    x_cl = x.contiguous(memory_format=torch.channels_last)
    flops = 2 * conv_macs(base, x)

    fp32 = copy.deepcopy(base)
    sft_kernels.convert_(fp32, backend="cpu")
    ours = copy.deepcopy(base)
    report = sft_kernels.quantize_(ours, sft_kernels.Int8Config(), calibration=calib, progress=False)
    print("quantize_ alone:", str(report).splitlines()[0])
    # traced first: the residual adds join their convs, so the maps between blocks can stay uint8 too
    fused = sft_kernels.fuse_for_inference(copy.deepcopy(base), x, backend="cpu")
    report = sft_kernels.quantize_(fused, sft_kernels.Int8Config(), calibration=calib, progress=False)
    print("fuse_for_inference + quantize_:", str(report).splitlines()[0])
    ao = torch_ao_int8(base, calib)
    eager_cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
    meta = {"conv_gflop": flops / 1e9, "engine": "x86"}
    with torch.no_grad():
        ref = base(x)
        for name, m in (("sft fp32", fp32), ("sft int8", ours), ("sft int8 fused", fused), ("torch.ao int8", ao)):
            meta[f"rel_err {name}"] = err = ((m(x) - ref).abs().max() / ref.abs().max()).item()
            print(f"{name} output vs eager fp32: max |diff| / max |fp32| = {err:.2e}")
    fns = {"eager fp32 NCHW": lambda: base(x), "eager fp32 channels_last": lambda: eager_cl(x_cl),
           "sft fp32 (convert_)": lambda: fp32(x), "torch.ao int8 (x86)": lambda: ao(x),
           "sft int8 (quantize_)": lambda: ours(x), "sft int8 (fuse_for_inference + quantize_)": lambda: fused(x)}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        new, peak = time_models(fns, flops, threads, lambda t: t["torch.ao int8 (x86)"], args.repeat)
        rows += new
        meta[threads] = {"peak_gflops": peak}
    print(model_table(rows, "vs torch.ao int8"))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
