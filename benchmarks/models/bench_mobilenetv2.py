"""MobileNetV2 (width 1.0) 1×3×224×224 end to end, the "any CNN" check for depthwise-separable networks: what a
user would run instead (eager PyTorch on NCHW and channels_last input, onnxruntime, torch.ao's int8 FX graph mode)
beside the same model through sft_kernels (convert_; fuse_for_inference, which folds batch norms and ReLU6 and runs
each depthwise conv with the 1×1 projection after it as one fused separable conv, and each whole inverted residual
(1×1 expand, depthwise, projection) as one sft.inverted_residual; the same without the inverted residuals, as it ran
before that op; that model quantized with quantize_), side by side in one process, interleaved medians. Our models
get the ordinary NCHW tensor.

Weights are random (seeded) with non-trivial batch-norm statistics: speed does not depend on them; each variant's
output is compared with eager's (relative max error for float, SQNR in dB for int8).
Run: python benchmarks/models/bench_mobilenetv2.py [--threads 1 2] [--repeat 10] [--compile] [-o out.json]
"""
import argparse
import copy
import json
import math
import os
import sys
import tempfile
import warnings

import torch
from torch import nn

import sft_kernels
from sft_kernels.transforms import fuse as fuse_mod
from sft_kernels.metrics import conv_macs
from sft_kernels.tools.benchmark import model_table, time_models

# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table 2
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> list:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers = conv_bn(cin, hidden) if t != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, hidden) + conv_bn(hidden, cout, act=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    layers, cin = conv_bn(3, 32, 3, 2), 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += conv_bn(cin, 1280) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                                    nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


def build() -> nn.Module:
    torch.manual_seed(0)
    model = mobilenet_v2().eval()
    for m in model.modules():  # non-trivial statistics, so folding is not an identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model


def sqnr(y: torch.Tensor, ref: torch.Tensor) -> float:
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((y - ref) ** 2).sum()), 1e-30))


def torch_ao_int8(model: nn.Module, calib: list, x: torch.Tensor):
    """torch.ao's FX graph mode post-training int8 (x86 engine), or None where this PyTorch lacks it."""
    try:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
            with torch.no_grad():
                for c in calib:
                    prepared(c)
            return convert_fx(prepared)
    except Exception as e:  # noqa: BLE001 - report and go on: the other rows still mean something
        print(f"torch.ao int8 unavailable here: {type(e).__name__}: {e}")
        return None


def onnxruntime_session(model: nn.Module, x: torch.Tensor, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: no onnxruntime row")
        return None
    path = os.path.join(tempfile.mkdtemp(), "mobilenet_v2.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["output"], opset_version=17,
                          dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    return lambda: sess.run(None, {"input": xn})[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="include torch.compile with freezing (slow to warm up)")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    base = build()
    x = torch.rand(1, 3, 224, 224)  # an ordinary NCHW image tensor
    calib = [torch.rand(1, 3, 224, 224) for _ in range(4)]
    flops = 2 * conv_macs(base, x)
    cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)
    conv = copy.deepcopy(base)
    sft_kernels.convert_(conv, backend="cpu")
    fused = sft_kernels.fuse_for_inference(base, x, backend="cpu")
    ir_pass, fuse_mod._ir_backend = fuse_mod._ir_backend, lambda backend: False  # the separable fusion only
    try:
        fused_sep = sft_kernels.fuse_for_inference(base, x, backend="cpu")
    finally:
        fuse_mod._ir_backend = ir_pass
    int8 = sft_kernels.fuse_for_inference(base, x, backend="cpu")
    qreport = sft_kernels.quantize_(int8, sft_kernels.Int8Config(), calibration=calib, progress=False)
    ao = torch_ao_int8(base, calib, x)
    print(f"conv FLOPs per forward: {flops / 1e9:.3f} G; fuse_for_inference folded {fused.fusion_report[1]}; "
          f"quantize_: {len(qreport.names('quantized'))} int8 convs; int8 kernel "
          f"{qreport.stats.get('cpu_kernel')}")
    with torch.no_grad():
        ref = base(x)
        quality = {"sft convert_": conv(x), "sft fuse_for_inference": fused(x), "eager channels_last": cl(xcl)}
        quality = {k: f"rel err {((v - ref).abs().max() / ref.abs().max()).item():.1e}" for k, v in quality.items()}
        quality["sft fuse + quantize_ int8"] = f"SQNR {sqnr(int8(x), ref):.1f} dB"
        if ao is not None:
            quality["torch.ao int8 (FX)"] = f"SQNR {sqnr(ao(x), ref):.1f} dB"
    for k, v in quality.items():
        print(f"  {k}: {v} against eager")
    rows, meta = [], {"conv_gflop": flops / 1e9, "folded": fused.fusion_report[1], "quality": quality}
    for threads in args.threads:
        torch.set_num_threads(threads)
        fns = {"eager NCHW": lambda: base(x), "eager channels_last": lambda: cl(xcl)}
        ort_run = onnxruntime_session(base, x, threads)
        if ort_run is not None:
            fns["onnxruntime fp32"] = ort_run
        if ao is not None:
            fns["torch.ao int8 (FX)"] = lambda: ao(x)
        if args.compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            comp = torch.compile(copy.deepcopy(cl))
            fns["torch.compile+freezing (cl)"] = lambda: comp(xcl)
        fns.update({"sft convert_": lambda: conv(x), "sft fuse, separable only": lambda: fused_sep(x),
                    "sft fuse_for_inference": lambda: fused(x),
                    "sft fuse + quantize_ int8": lambda: int8(x)})
        new, peak = time_models(fns, flops, threads, lambda t: min(t["eager NCHW"], t["eager channels_last"]),
                                args.repeat, warmup=3)
        rows += new
        meta[threads] = {"peak_gflops": peak}
    print(model_table(rows, "vs eager (best layout)"))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
