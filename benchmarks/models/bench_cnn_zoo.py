"""Converted CNNs other than SFTNet, as a user would run them: eager PyTorch (NCHW and channels_last, its best
taken) against `sft_kernels.convert_` and `sft_kernels.fuse_for_inference` fed the same ordinary NCHW tensor
under torch.no_grad(), interleaved medians, with the converted models' error against eager.

The models are built here (no torchvision in the CI image) with random, seeded weights and batch-norm statistics
(speed does not depend on them): VGG-like, ResNet-18, EDSR (16 blocks, residual scaling, two PixelShuffles), a
U-Net on an odd size (transposed conv, bilinear upsampling, concatenations), a DeepLab-style net (output stride
8, blocks at rate 2, ASPP at rates 6/12/18), an ASPP-only net, a ResNeXt block (groups 32), odd kernels (5×5
stride 2, 1×7, 7×1, dilated 'same' padding, unpadded stride 2) and ResNet-18 at batch 4.
Run: python benchmarks/models/bench_cnn_zoo.py [--threads 1 2] [--models vgg dilated ...] [--int8 [--winograd]]
     [-o out.json]
"""
import argparse
import copy
import json
import sys

import torch
import torch.nn.functional as F
from torch import nn

import sft_kernels
from sft_kernels.tools.benchmark import time_interleaved

def cbr(ci, co, k=3, stride=1, dilation=1, groups=1):
    """conv (padding k//2 · dilation, no bias) → batch norm → ReLU."""
    return nn.Sequential(nn.Conv2d(ci, co, k, stride, k // 2 * dilation, dilation, groups, bias=False),
                         nn.BatchNorm2d(co), nn.ReLU(inplace=True))


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for co, n in ((64, 2), (128, 2), (256, 3)):
            for _ in range(n):
                layers += [nn.Conv2d(c, co, 3, padding=1), nn.ReLU(inplace=True)]
                c = co
            layers.append(nn.MaxPool2d(2))
        self.features, self.fc = nn.Sequential(*layers), nn.Linear(256, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class Basic(nn.Module):
    def __init__(self, ci, co, stride, dilation=1):
        super().__init__()
        self.c1 = cbr(ci, co, 3, stride, dilation)
        self.c2, self.b2 = nn.Conv2d(co, co, 3, 1, dilation, dilation, bias=False), nn.BatchNorm2d(co)
        self.down = nn.Identity()
        if stride != 1 or ci != co:
            self.down = nn.Sequential(nn.Conv2d(ci, co, 1, stride, bias=False), nn.BatchNorm2d(co))

    def forward(self, x):
        return F.relu(self.b2(self.c2(self.c1(x))) + self.down(x))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], 64
        for co, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Basic(c, co, stride), Basic(co, co, 1)]
            c = co
        self.layers, self.fc = nn.Sequential(*blocks), nn.Linear(512, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class EDSRBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x) * 0.1


class EDSR(nn.Module):
    def __init__(self, c=64, n=16):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*[EDSRBlock(c) for _ in range(n)], nn.Conv2d(c, c, 3, padding=1))
        self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2),
                                nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.up(h + self.body(h)))


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2 = nn.Sequential(cbr(3, 32), cbr(32, 32)), nn.Sequential(cbr(32, 64, stride=2), cbr(64, 64))
        self.e3 = nn.Sequential(cbr(64, 128, stride=2), cbr(128, 128))
        self.u2, self.d2 = nn.ConvTranspose2d(128, 64, 2, 2), nn.Sequential(cbr(128, 64), cbr(64, 64))
        self.d1 = nn.Sequential(cbr(96, 32), nn.Conv2d(32, 2, 1))

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(a)
        u = self.u2(self.e3(b))[..., :b.shape[2], :b.shape[3]]
        d = self.d2(torch.cat([u, b], 1))
        return self.d1(torch.cat([F.interpolate(d, size=a.shape[2:], mode="bilinear", align_corners=False), a], 1))


class ASPP(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, 64, 3, 2), cbr(64, 128, 3, 2))
        self.branches = nn.ModuleList([cbr(128, 64, 1)] + [cbr(128, 64, 3, dilation=d) for d in (2, 4, 6)])
        self.proj = nn.Conv2d(256, 21, 1)

    def forward(self, x):
        h = self.stem(x)
        return self.proj(torch.cat([b(h) for b in self.branches], 1))


class DilatedNet(nn.Module):
    """DeepLab-style: output stride 8, two blocks at rate 2, an ASPP head at rates 6 / 12 / 18."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, 64, 3, 2), cbr(64, 128, 3, 2), cbr(128, 256, 3, 2))
        self.blocks = nn.Sequential(Basic(256, 256, 1, 2), Basic(256, 256, 1, 2))
        self.aspp = nn.ModuleList([cbr(256, 128, 1)] + [cbr(256, 128, 3, dilation=d) for d in (6, 12, 18)])
        self.proj = nn.Sequential(cbr(512, 128, 1), nn.Conv2d(128, 21, 1))

    def forward(self, x):
        h = self.blocks(self.stem(x))
        y = self.proj(torch.cat([b(h) for b in self.aspp], 1))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


class ResNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 64, 3, 2)
        self.block = nn.Sequential(cbr(64, 128, 1), cbr(128, 128, 3, groups=32), nn.Conv2d(128, 256, 1),
                                   nn.BatchNorm2d(256))
        self.shortcut = nn.Conv2d(64, 256, 1)

    def forward(self, x):
        h = self.stem(x)
        return F.relu(self.block(h) + self.shortcut(h))


class Odd(nn.Module):
    """5×5 stride 2, 1×7 and 7×1, a dilated conv with padding='same', an unpadded stride-2 conv; GELU, SiLU."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 24, 5, 2, 2), nn.Conv2d(24, 24, (1, 7), padding=(0, 3))
        self.c, self.d = nn.Conv2d(24, 24, (7, 1), padding=(3, 0)), nn.Conv2d(24, 48, 3, padding="same", dilation=2)
        self.e = nn.Conv2d(48, 48, 3, 2, 0, bias=False)

    def forward(self, x):
        return self.e(F.silu(self.d(F.gelu(self.c(self.b(F.relu(self.a(x))))))))


CASES = [("vgg", VGG, (1, 3, 128, 128)), ("resnet18", ResNet18, (1, 3, 224, 224)), ("edsr16", EDSR, (1, 3, 64, 64)),
         ("unet-odd", UNet, (1, 3, 101, 77)), ("dilated", DilatedNet, (1, 3, 256, 256)),
         ("aspp", ASPP, (1, 3, 160, 160)), ("resnext", ResNeXt, (1, 3, 112, 112)), ("odd", Odd, (2, 3, 95, 61)),
         ("resnet18-b4", ResNet18, (4, 3, 160, 160))]


def run(name, cls, shape, repeat, int8=False, winograd=False):
    torch.manual_seed(0)
    m = cls().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = m(x)
        conv = copy.deepcopy(m)
        sft_kernels.convert_(conv)
        fused = sft_kernels.fuse_for_inference(m, x)
        err = {k: float((mm(x) - ref).abs().max() / ref.abs().max())
               for k, mm in (("convert", conv), ("fused", fused))}
        xcl = x.contiguous(memory_format=torch.channels_last)
        mcl = copy.deepcopy(m).to(memory_format=torch.channels_last)
        fns = {"eager nchw": lambda: m(x), "eager cl": lambda: mcl(xcl), "convert": lambda: conv(x),
               "fused": lambda: fused(x)}
        if int8:  # calibrated on other random inputs of the same shape; its error is quantization's, not a bug's
            q = copy.deepcopy(fused)
            sft_kernels.quantize_(q, sft_kernels.Int8Config(), calibration=[torch.randn(*shape) for _ in range(2)],
                                  progress=False)
            int8_err = float((q(x) - ref).abs().max() / ref.abs().max())
            fns["int8"] = lambda: q(x)
        if int8 and winograd:  # the same with the Winograd form where it measures faster (the same calibration)
            qw = copy.deepcopy(fused)
            rep = sft_kernels.quantize_(qw, sft_kernels.Int8Config(winograd=True),
                                        calibration=[torch.randn(*shape) for _ in range(2)], progress=False)
            n_wino = sum(1 for r in rep.rows if r.stats.get("winograd"))
            wino_err = float((qw(x) - ref).abs().max() / ref.abs().max())
            fns["int8 winograd"] = lambda: qw(x)
        t = time_interleaved(fns, repeat=repeat, min_time=0.3)
    best = min(t["eager nchw"], t["eager cl"])
    row = dict(model=name, input=list(shape), threads=torch.get_num_threads(),
               **{f"{k} ms": v * 1e3 for k, v in t.items()}, convert_vs_eager=best / t["convert"],
               fused_vs_eager=best / t["fused"], rel_err=err)
    if int8:
        row.update(int8_vs_eager=best / t["int8"], int8_vs_fused=t["fused"] / t["int8"], int8_rel_err=int8_err)
    if int8 and winograd:
        row.update(winograd_convs=n_wino, winograd_vs_int8=t["int8"] / t["int8 winograd"],
                   winograd_vs_eager=best / t["int8 winograd"], winograd_rel_err=wino_err)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--models", nargs="+", choices=[c[0] for c in CASES], help="default: all")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--int8", action="store_true",
                   help="also quantize_ the fused model (calibrated on two random inputs) and time it")
    p.add_argument("--winograd", action="store_true",
                   help="with --int8: also Int8Config(winograd=True) (3×3 convs in the Winograd domain where faster)")
    p.add_argument("-o", "--output", help="write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    print(f"{'thr':>3} {'model':12s} {'eager nchw':>10} {'eager cl':>9} {'convert':>8} {'fused':>8} "
          f"{'convert vs eager':>16} {'fused vs eager':>14}  max rel err")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, cls, shape in CASES:
            if args.models and name not in args.models:
                continue
            r = run(name, cls, shape, args.repeat, args.int8, args.winograd)
            rows.append(r)
            print(f"{threads:>3} {name:12s} {r['eager nchw ms']:10.2f} {r['eager cl ms']:9.2f} {r['convert ms']:8.2f} "
                  f"{r['fused ms']:8.2f} {r['convert_vs_eager']:15.2f}x {r['fused_vs_eager']:13.2f}x  "
                  f"{max(r['rel_err'].values()):.1e}" + (
                      f"  int8 {r['int8 ms']:.2f} ms: {r['int8_vs_eager']:.2f}x eager, {r['int8_vs_fused']:.2f}x "
                      f"fused (rel err {r['int8_rel_err']:.1e})" if args.int8 else "") + (
                      f"  winograd ({r['winograd_convs']} convs) {r['int8 winograd ms']:.2f} ms: "
                      f"{r['winograd_vs_int8']:.2f}x int8, {r['winograd_vs_eager']:.2f}x eager (rel err "
                      f"{r['winograd_rel_err']:.1e})" if args.int8 and args.winograd else ""), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
