"""ResNet-50 (v1.5) 1×3×224×224 end to end, the "any CNN" check: eager PyTorch against the same model converted to
sft_kernels, side by side in one process.

Batch norms are folded into their convs first (torch.nn.utils.fusion.fuse_conv_bn_eval, as any inference deployment
does), so both sides run the same 53 convs plus ReLUs, residual adds, pooling and the classifier;
`sft_kernels.convert_` then swaps every conv. `sft_kernels.fuse_for_inference` starts from the unfolded model and
also folds the ReLUs after convs and the residual adds into the convs' epilogues. Weights are random (seeded): speed
does not depend on them. onnxruntime (its CPU provider, if installed) runs the unfolded model exported to ONNX. The
converted model runs under the default weight check (converted weights trusted by their version counters) and under
"full", which reads every weight each call (sft_kernels.weight_check).
Run: python benchmarks/models/bench_resnet50.py [--threads 1 2] [--batch 1] [--repeat 10] [--compile] [--prune 0.9 [--prune-pattern block]] [-o out.json]
"""
import argparse
import copy
import json
import sys

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

import sft_kernels
from sft_kernels.tools.benchmark import model_table, time_models
from sft_kernels.metrics import conv_macs

from bench_mobilenetv2 import onnxruntime_session  # (this folder)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def resnet50(num_classes: int = 1000) -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Every conv followed by a batch norm (as attributes convN/bnN, a Sequential pair, or the stem) becomes one
    conv with the norm folded in; the norms become identities."""
    for m in module.modules():
        if isinstance(m, Bottleneck):
            for i in (1, 2, 3):
                setattr(m, f"conv{i}", fuse_conv_bn_eval(getattr(m, f"conv{i}"), getattr(m, f"bn{i}")))
                setattr(m, f"bn{i}", nn.Identity())
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    m[i], m[i + 1] = fuse_conv_bn_eval(m[i], m[i + 1]), nn.Identity()
    return module


def build(batch: int, fold: bool = True):
    torch.manual_seed(0)
    model = resnet50().eval()
    for m in model.modules():  # non-trivial statistics, so folding is not an identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = (fold_batch_norms(model) if fold else model).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    return model, x


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="include torch.compile with freezing (slow to warm up)")
    p.add_argument("--prune", type=float, default=None, metavar="SPARSITY",
                   help="also a copy pruned by magnitude (random weights: timing only), fused")
    p.add_argument("--prune-pattern", default="unstructured", choices=["unstructured", "block"],
                   help="--prune's pattern: single weights, or blocks of 4 output channels")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    base, x = build(args.batch)
    flops = 2 * conv_macs(base, x)
    conv = copy.deepcopy(base)
    report = sft_kernels.convert_(conv, backend="cpu")
    print(f"{report}; conv FLOPs per forward: {flops / 1e9:.2f} G")
    rows, meta = [], {"batch": args.batch, "conv_gflop": flops / 1e9, "converted": len(report.converted)}
    with torch.no_grad():
        ref = base(x)
        err = ((conv(x) - ref).abs().max() / ref.abs().max()).item()
    print(f"converted output vs eager: max |diff| / max |eager| = {err:.1e}")
    meta["rel_err"] = err
    def checked_by_content():
        with sft_kernels.weight_check("full"):
            return conv(x)

    fused = sft_kernels.fuse_for_inference(build(args.batch, fold=False)[0], x, backend="cpu")
    print(f"fuse_for_inference folded {fused.fusion_report[1]}")
    with torch.no_grad():
        meta["rel_err_fused"] = ((fused(x) - ref).abs().max() / ref.abs().max()).item()
    fns = {"eager channels_last": lambda: base(x), "sft cpu": lambda: conv(x),
           "sft cpu, weight_check('full')": checked_by_content, "sft fuse_for_inference": lambda: fused(x)}
    if args.prune is not None:
        pruned = build(args.batch, fold=False)[0]
        sft_kernels.prune_(pruned, sft_kernels.PruneConfig(sparsity=args.prune, pattern=args.prune_pattern))
        pruned = sft_kernels.fuse_for_inference(pruned, x, backend="cpu")
        tag = "" if args.prune_pattern == "unstructured" else f" {args.prune_pattern}"
        fns[f"sft fuse_for_inference, pruned {args.prune:.0%}{tag}"] = lambda: pruned(x)
    if args.compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        comp = torch.compile(copy.deepcopy(base))
        fns["torch.compile+freezing"] = lambda: comp(x)
    for threads in args.threads:
        torch.set_num_threads(threads)
        ort_run = onnxruntime_session(build(args.batch, fold=False)[0], x, threads)  # what users run instead
        fns.pop("onnxruntime fp32", None)
        if ort_run is not None:
            fns["onnxruntime fp32"] = ort_run
        new, peak = time_models(fns, flops, threads, lambda t: t["eager channels_last"], args.repeat)
        rows += new
        meta[threads] = {"peak_gflops": peak}
    print(model_table(rows, "vs eager channels_last"))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
