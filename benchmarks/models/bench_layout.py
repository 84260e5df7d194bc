"""A converted model fed what users pass: an ordinary contiguous NCHW tensor, against the same model fed
channels_last input and against eager PyTorch on the same NCHW input (under torch.no_grad(), one fresh process per
thread count, interleaved medians).

Models: SFTNet (convert_, 1×3×LR² → ×4) and ResNet-50 v1.5 (fuse_for_inference, 1×3×224²; batch norms folded by
the transform itself, from an NCHW model as a user would have it).
Usage: python benchmarks/models/bench_layout.py [--threads 1 2] [--lr 128] [--repeat 9] [-o out.json]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(threads: int, lr: int, repeat: int) -> dict:
    import torch

    import sft_kernels
    from sft_kernels.models import SFTNet

    sys.path.insert(0, HERE)
    from bench_resnet50 import resnet50

    torch.set_num_threads(threads)
    out = {}
    eager = SFTNet().reset_parameters_(seed=0).eval()
    conv = SFTNet().reset_parameters_(seed=0).eval()
    sft_kernels.convert_(conv)
    x = torch.rand(1, 3, lr, lr)
    out["sftnet"] = run(eager, conv, x, repeat)
    torch.manual_seed(0)
    r50 = resnet50().eval()
    for m in r50.modules():  # non-trivial statistics, so folding is not an identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 224, 224)
    out["resnet50"] = run(r50, sft_kernels.fuse_for_inference(r50, x), x, repeat)
    return out


def run(eager, converted, x, repeat) -> dict:
    import torch

    from sft_kernels.tools.benchmark import time_interleaved

    xcl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = eager(x)
        err = max((converted(x) - ref).abs().max().item(), (converted(xcl) - ref).abs().max().item())
        t = time_interleaved({"eager_nchw": lambda: eager(x), "converted_nchw": lambda: converted(x),
                              "converted_channels_last": lambda: converted(xcl)}, repeat=repeat)
    return dict(ms={k: v * 1e3 for k, v in t.items()}, max_abs_err=err, scale=ref.abs().max().item(),
                nchw_over_channels_last=t["converted_nchw"] / t["converted_channels_last"],
                speedup_vs_eager_nchw=t["eager_nchw"] / t["converted_nchw"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128, help="SFTNet LR size (default 128)")
    p.add_argument("--repeat", type=int, default=9, help="interleaved rounds (median kept)")
    p.add_argument("-o", "--output", help="write the results as JSON")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.lr, args.repeat)))
        return 0
    results = {}
    for t in args.threads:  # a fresh process per thread count, as a user's program starts
        cmd = [sys.executable, __file__, "--child", str(t), "--lr", str(args.lr), "--repeat", str(args.repeat)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[t] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'model':9s} {'threads':>7s} {'eager NCHW':>11s} {'ours NCHW':>10s} {'ours CL':>9s} "
          f"{'NCHW/CL':>8s} {'vs eager':>9s} {'max err':>9s}")
    for t, per in results.items():
        for name, r in per.items():
            ms = r["ms"]
            print(f"{name:9s} {t:7d} {ms['eager_nchw']:9.1f}ms {ms['converted_nchw']:8.1f}ms "
                  f"{ms['converted_channels_last']:7.1f}ms {r['nchw_over_channels_last']:7.2f}x "
                  f"{r['speedup_vs_eager_nchw']:8.2f}x {r['max_abs_err']:9.1e}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(lr=args.lr, repeat=args.repeat, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
