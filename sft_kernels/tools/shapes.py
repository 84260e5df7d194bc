"""Shape catalog shared by benchmarks, `sft-kernels bench` and `sft-kernels tune`.

Every conv shape of SFTNet ("pytorch" variant) for a 1×3×128×128 input (×4 → 512×512), with how many
times the network runs it, the same for ResNet-50 and MobileNetV2 at 224×224, plus square and conv-shaped GEMMs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..runtime.checks import conv_output_hw


@dataclass(frozen=True)
class ConvShape:
    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    count: int = 1  # occurrences in one SFTNet forward
    dilation: int = 1

    @property
    def pq(self) -> tuple:
        return conv_output_hw(self.h, self.w, self.r, self.s, (self.stride,) * 2, (self.padding,) * 2,
                              (self.dilation,) * 2)

    @property
    def flops(self) -> int:
        """Direct-convolution FLOPs 2·N·K·C/g·R·S·P·Q, whatever the algorithm."""
        p, q = self.pq
        return 2 * self.n * self.k * (self.c // self.groups) * self.r * self.s * p * q

    def scaled(self, n: int = 1, lr: int = 128) -> "ConvShape":
        """The same layer for batch n at another LR size (spatial dims scale with lr/128)."""
        f = lr / 128
        return ConvShape(self.name, n, self.c, int(self.h * f), int(self.w * f), self.k, self.r, self.s,
                         self.stride, self.padding, self.groups, self.count, self.dilation)


def sftnet_conv_shapes(lr: int = 128, n: int = 1) -> list:
    """The distinct conv layers of SFTNet("pytorch") at an lr×lr input."""
    base = [
        ConvShape("cond_in 8→128 k4s4", 1, 8, 512, 512, 128, 4, 4, stride=4, count=1),
        ConvShape("cond 128→128 1×1", 1, 128, 128, 128, 128, 1, 1, count=3),
        ConvShape("cond_out 128→32 1×1", 1, 128, 128, 128, 32, 1, 1, count=1),
        ConvShape("conv0 3→64 3×3", 1, 3, 128, 128, 64, 3, 3, padding=1, count=1),
        ConvShape("sft0 32→32 1×1", 1, 32, 128, 128, 32, 1, 1, count=66),
        ConvShape("sft1 32→64 1×1", 1, 32, 128, 128, 64, 1, 1, count=66),
        ConvShape("trunk 64→64 3×3", 1, 64, 128, 128, 64, 3, 3, padding=1, count=33),
        ConvShape("up1 64→256 3×3 @128", 1, 64, 128, 128, 256, 3, 3, padding=1, count=1),
        ConvShape("up2 64→256 3×3 @256", 1, 64, 256, 256, 256, 3, 3, padding=1, count=1),
        ConvShape("hr 64→64 3×3 @512", 1, 64, 512, 512, 64, 3, 3, padding=1, count=1),
        ConvShape("out 64→3 3×3 @512", 1, 64, 512, 512, 3, 3, 3, padding=1, count=1),
    ]
    return [s.scaled(n, lr) for s in base]


def resnet50_conv_shapes(size: int = 224, n: int = 1) -> list:
    """The distinct conv layers of ResNet-50 (v1.5: stride on the 3×3) at a size×size input; count = how many
    of its 53 convs have that shape. The "any CNN" catalog: deep channels over small images, strided convs."""
    def c(name, cin, cout, hw, r, stride, count):
        h = hw * size // 224
        return ConvShape(name, n, cin, h, h, cout, r, r, stride=stride, padding=r // 2, count=count)

    return [
        c("stem 3→64 7×7 s2", 3, 64, 224, 7, 2, 1),
        c("l1 64→64 1×1", 64, 64, 56, 1, 1, 1), c("l1 256→64 1×1", 256, 64, 56, 1, 1, 2),
        c("l1 64→64 3×3", 64, 64, 56, 3, 1, 3), c("l1 64→256 1×1", 64, 256, 56, 1, 1, 4),
        c("l2 256→128 1×1", 256, 128, 56, 1, 1, 1), c("l2 128→128 3×3 s2", 128, 128, 56, 3, 2, 1),
        c("l2 256→512 1×1 s2", 256, 512, 56, 1, 2, 1), c("l2 512→128 1×1", 512, 128, 28, 1, 1, 3),
        c("l2 128→128 3×3", 128, 128, 28, 3, 1, 3), c("l2 128→512 1×1", 128, 512, 28, 1, 1, 4),
        c("l3 512→256 1×1", 512, 256, 28, 1, 1, 1), c("l3 256→256 3×3 s2", 256, 256, 28, 3, 2, 1),
        c("l3 512→1024 1×1 s2", 512, 1024, 28, 1, 2, 1), c("l3 1024→256 1×1", 1024, 256, 14, 1, 1, 5),
        c("l3 256→256 3×3", 256, 256, 14, 3, 1, 5), c("l3 256→1024 1×1", 256, 1024, 14, 1, 1, 6),
        c("l4 1024→512 1×1", 1024, 512, 14, 1, 1, 1), c("l4 512→512 3×3 s2", 512, 512, 14, 3, 2, 1),
        c("l4 1024→2048 1×1 s2", 1024, 2048, 14, 1, 2, 1), c("l4 2048→512 1×1", 2048, 512, 7, 1, 1, 2),
        c("l4 512→512 3×3", 512, 512, 7, 3, 1, 2), c("l4 512→2048 1×1", 512, 2048, 7, 1, 1, 3),
    ]


def mobilenetv2_conv_shapes(size: int = 224, n: int = 1) -> list:
    """The distinct conv layers of MobileNetV2 (width 1.0) at a size×size input; count = how many of its 52 convs
    have that shape. The depthwise catalog: each inverted residual is a 1×1 expansion, a depthwise 3×3 (groups = its
    channels) and a 1×1 projection."""
    out = {}

    def add(label, cin, cout, hw, r, stride=1, groups=1):
        h = max(1, hw * size // 224)
        key = (cin, cout, h, r, stride, groups)
        if key in out:
            out[key] = dataclasses.replace(out[key], count=out[key].count + 1)
        else:
            name = f"{label} @{h}" + (" s2" if stride == 2 else "")
            out[key] = ConvShape(name, n, cin, h, h, cout, r, r, stride=stride, padding=r // 2, groups=groups)

    add("stem 3→32 3×3", 3, 32, 224, 3, 2)
    c, hw = 32, 112
    for t, k, reps, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(reps):
            st = stride if i == 0 else 1
            e = c * t
            if t != 1:
                add(f"expand {c}→{e}", c, e, hw, 1)
            add(f"dw {e} 3×3", e, e, hw, 3, st, groups=e)
            hw //= st
            add(f"project {e}→{k}", e, k, hw, 1)
            c = k
    add(f"last {c}→1280", c, 1280, hw, 1)
    return list(out.values())


def deeplabv3_conv_shapes(size: int = 256, n: int = 1) -> list:
    """The dilated convs of DeepLabv3 (ResNet-50 at output stride 8, as torchvision builds it: layer3 dilated by 2,
    layer4 by 4 after each stage's first block, ASPP rates 12 / 24 / 36) on its size/8 feature maps, with the
    ASPP's 1×1 branch and the head's 3×3 conv. The dilated catalog: maps where rates 24 and 36 read mostly padding."""
    h = max(1, size // 8)

    def c(name, cin, cout, r, dilation, count=1):
        return ConvShape(name, n, cin, h, h, cout, r, r, padding=dilation * (r // 2), count=count, dilation=dilation)

    return [c("l3 256→256 3×3 d2", 256, 256, 3, 2, 5), c("l4 512→512 3×3 d2", 512, 512, 3, 2, 1),
            c("l4 512→512 3×3 d4", 512, 512, 3, 4, 2), c("aspp 2048→256 1×1", 2048, 256, 1, 1),
            c("aspp 2048→256 3×3 d12", 2048, 256, 3, 12), c("aspp 2048→256 3×3 d24", 2048, 256, 3, 24),
            c("aspp 2048→256 3×3 d36", 2048, 256, 3, 36), c("head 256→256 3×3", 256, 256, 3, 1)]


def grouped_conv_shapes(size: int = 224, n: int = 1) -> list:
    """The grouped 3×3 convs of ResNeXt-50 (32×4d: 32 groups of 4, 8, 16, 32 channels per stage, the first of each
    later stage strided) and of RegNetX-style stages (groups of 8 and 16 channels), at a size×size input."""
    def c(name, ch, h, g, stride=1, count=1):
        return ConvShape(name, n, ch, h, h, ch, 3, 3, stride=stride, padding=1, groups=g, count=count)

    s4, s8, s16, s32 = (max(1, size // f) for f in (4, 8, 16, 32))
    return [c("resnext 128 g32 (4/grp)", 128, s4, 32, count=3), c("resnext 256 g32 s2", 256, s4, 32, 2),
            c("resnext 256 g32 (8/grp)", 256, s8, 32, count=3), c("resnext 512 g32 s2", 512, s8, 32, 2),
            c("resnext 512 g32 (16/grp)", 512, s16, 32, count=5), c("resnext 1024 g32 s2", 1024, s16, 32, 2),
            c("resnext 1024 g32 (32/grp)", 1024, s32, 32, count=2), c("regnet 64 g8 (8/grp)", 64, s4, 8),
            c("regnet 160 g10 (16/grp)", 160, s8, 10), c("regnet 384 g24 (16/grp)", 384, s16, 24)]


def wide_depthwise_conv_shapes(size: int = 224, n: int = 1) -> list:
    """The 5×5 and 7×7 depthwise convs of ConvNeXt-T (7×7 on 96 / 192 / 384 / 768 channels) and EfficientNet-B0
    (5×5, the first of two stages strided) at a size×size input, as torchvision builds them."""
    def c(name, ch, hw, r, stride=1, count=1):
        h = max(1, hw * size // 224)
        return ConvShape(f"{name} @{h}" + (" s2" if stride == 2 else ""), n, ch, h, h, ch, r, r, stride=stride,
                         padding=r // 2, groups=ch, count=count)

    return [c("convnext dw 96 7×7", 96, 56, 7, count=3), c("convnext dw 192 7×7", 192, 28, 7, count=3),
            c("convnext dw 384 7×7", 384, 14, 7, count=9), c("convnext dw 768 7×7", 768, 7, 7, count=3),
            c("effnet dw 144 5×5", 144, 56, 5, 2), c("effnet dw 240 5×5", 240, 28, 5),
            c("effnet dw 480 5×5", 480, 14, 5), c("effnet dw 672 5×5", 672, 14, 5, count=2),
            c("effnet dw 672 5×5", 672, 14, 5, 2), c("effnet dw 1152 5×5", 1152, 7, 5, count=3)]


CONV_CATALOGS = {"sftnet": sftnet_conv_shapes, "resnet50": resnet50_conv_shapes,
                 "mobilenetv2": mobilenetv2_conv_shapes, "deeplabv3": deeplabv3_conv_shapes,
                 "grouped": grouped_conv_shapes, "wide_depthwise": wide_depthwise_conv_shapes}


# Small versions for quick runs (`--quick`) and CI smoke runs: same layers at a 32×32 LR input.
def quick_conv_shapes(catalog: str = "sftnet") -> list:
    return sftnet_conv_shapes(lr=32) if catalog == "sftnet" else CONV_CATALOGS[catalog](56)


@dataclass(frozen=True)
class SeparableShape:
    """A depthwise R×S conv on c channels (multiplier 1) followed by a 1×1 conv to k channels."""
    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int = 3
    stride: int = 1

    @property
    def pq(self) -> tuple:
        return conv_output_hw(self.h, self.w, self.r, self.r, (self.stride,) * 2, (self.r // 2,) * 2, (1, 1))

    @property
    def flops(self) -> int:
        """Depthwise plus pointwise multiply-adds, ×2."""
        p, q = self.pq
        return 2 * self.n * p * q * self.c * (self.r * self.r + self.k)


def separable_shapes(catalog: str = "sftnet", n: int = 1) -> list:
    """sftnet: SFTNet-like widths (64 and 128 channels) at 64² to 256²; mobilenetv2: MobileNetV2's depthwise +
    projection pairs at 224² (expanded width -> output width; the stride-2 ones on their input size)."""
    if catalog == "sftnet":
        return [SeparableShape(f"{c}->{k} @{hw}", n, c, hw, hw, k) for hw in (64, 128, 256)
                for c, k in ((64, 64), (64, 128), (128, 128))]
    blocks = [(32, 112, 16, 1), (96, 112, 24, 2), (144, 56, 24, 1), (144, 56, 32, 2), (192, 28, 32, 1),
              (192, 28, 64, 2), (384, 14, 64, 1), (384, 14, 96, 1), (576, 14, 96, 1), (576, 14, 160, 2),
              (960, 7, 160, 1), (960, 7, 320, 1)]
    return [SeparableShape(f"{c}->{k} @{hw}" + (" s2" if st == 2 else ""), n, c, hw, hw, k, 3, st)
            for c, hw, k, st in blocks]


@dataclass(frozen=True)
class InvertedResidualShape:
    """A 1×1 expand conv c -> e, a depthwise R×R conv on e channels, a 1×1 projection e -> k; `residual`: the block
    adds its input (stride 1, k = c); `count`: blocks of this shape in one forward."""
    name: str
    n: int
    c: int
    h: int
    w: int
    e: int
    k: int
    stride: int = 1
    residual: bool = False
    count: int = 1
    r: int = 3

    @property
    def pq(self) -> tuple:
        return conv_output_hw(self.h, self.w, self.r, self.r, (self.stride,) * 2, (self.r // 2,) * 2, (1, 1))

    @property
    def flops(self) -> int:
        p, q = self.pq
        return 2 * self.n * (self.h * self.w * self.c * self.e + p * q * self.e * (self.r * self.r + self.k))


def inverted_residual_shapes(n: int = 1) -> list:
    """MobileNetV2's 16 inverted residual blocks (expansion 6) at 224², one entry per distinct shape."""
    blocks = [(16, 112, 96, 24, 2, 1), (24, 56, 144, 24, 1, 1), (24, 56, 144, 32, 2, 1), (32, 28, 192, 32, 1, 2),
              (32, 28, 192, 64, 2, 1), (64, 14, 384, 64, 1, 3), (64, 14, 384, 96, 1, 1), (96, 14, 576, 96, 1, 2),
              (96, 14, 576, 160, 2, 1), (160, 7, 960, 160, 1, 2), (160, 7, 960, 320, 1, 1)]
    return [InvertedResidualShape(f"{c}->{e}->{k} @{hw}" + (" s2" if st == 2 else ""), n, c, hw, hw, e, k, st,
                                  st == 1 and c == k, count) for c, hw, e, k, st, count in blocks]


GEMM_SQUARE = [512, 1024, 2048, 4096]
# (M, N, K) of the conv GEMMs: M = pixels, N = output channels, K = C·R·S
GEMM_CONV = [(16384, 64, 576), (16384, 256, 576), (16384, 64, 32), (16384, 32, 32), (262144, 64, 576)]
