"""Eight+ realistic CNNs not in the sft_kernels repo; random seeded weights, randomized BN stats, eval mode."""
import torch
import torch.nn.functional as F
from torch import nn


class SRCNN(nn.Module):  # 9-5-5 variant, on a bicubic-upscaled image
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 64, 9, padding=4)
        self.c2 = nn.Conv2d(64, 32, 5, padding=2)
        self.c3 = nn.Conv2d(32, 3, 5, padding=2)

    def forward(self, x):
        return self.c3(F.relu(self.c2(F.relu(self.c1(x)))))


class FSRCNN(nn.Module):  # d=56, s=12, m=4, x2
    def __init__(self, c=3, d=56, s=12, m=4, scale=2):
        super().__init__()
        self.feat = nn.Sequential(nn.Conv2d(c, d, 5, padding=2), nn.PReLU(d))
        layers = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.map = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, c, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x):
        return self.deconv(self.map(self.feat(x)))


class ESPCN(nn.Module):  # x3
    def __init__(self, c=3, r=3):
        super().__init__()
        self.c1 = nn.Conv2d(c, 64, 5, padding=2)
        self.c2 = nn.Conv2d(64, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, c * r * r, 3, padding=1)
        self.ps = nn.PixelShuffle(r)

    def forward(self, x):
        return torch.sigmoid(self.ps(self.c3(torch.tanh(self.c2(torch.tanh(self.c1(x)))))))


def cbr(ci, co, k=3, s=1, d=1):
    return nn.Sequential(nn.Conv2d(ci, co, k, s, k // 2 * d, d, bias=False), nn.BatchNorm2d(co), nn.ReLU(inplace=True))


class UNetSmall(nn.Module):
    def __init__(self, c=3, ncls=2, w=(16, 32, 64, 128)):
        super().__init__()
        self.enc = nn.ModuleList()
        ci = c
        for co in w:
            self.enc.append(nn.Sequential(cbr(ci, co), cbr(co, co)))
            ci = co
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for co in reversed(w[:-1]):
            self.up.append(nn.ConvTranspose2d(ci, co, 2, stride=2))
            self.dec.append(nn.Sequential(cbr(2 * co, co), cbr(co, co)))
            ci = co
        self.head = nn.Conv2d(ci, ncls, 1)

    def forward(self, x):
        skips = []
        for i, e in enumerate(self.enc):
            x = e(x)
            if i < len(self.enc) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], 1))
        return self.head(x)


class VGG11BN(nn.Module):
    """VGG-11 with BN, half width, classic classifier; `use_view` = the old-style x.view(x.size(0), -1)."""
    cfg = [32, 'M', 64, 'M', 128, 128, 'M', 256, 256, 'M', 256, 256, 'M']

    def __init__(self, use_view=False):
        super().__init__()
        layers, c = [], 3
        for v in self.cfg:
            if v == 'M':
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Linear(256 * 9, 512), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(), nn.Linear(512, 100))
        self.use_view = use_view

    def forward(self, x):
        x = self.avgpool(self.features(x))
        x = x.view(x.size(0), -1) if self.use_view else torch.flatten(x, 1)
        return self.classifier(x)


class SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(self.pool(x)))))


class MBConv(nn.Module):
    def __init__(self, ci, co, k, s, e):
        super().__init__()
        m = ci * e
        self.expand = nn.Sequential(nn.Conv2d(ci, m, 1, bias=False), nn.BatchNorm2d(m), nn.SiLU()) if e != 1 \
            else nn.Identity()
        self.dw = nn.Sequential(nn.Conv2d(m, m, k, s, k // 2, groups=m, bias=False), nn.BatchNorm2d(m), nn.SiLU())
        self.se = SE(m, max(1, ci // 4))
        self.proj = nn.Sequential(nn.Conv2d(m, co, 1, bias=False), nn.BatchNorm2d(co))
        self.res = s == 1 and ci == co

    def forward(self, x):
        y = self.proj(self.se(self.dw(self.expand(x))))
        return x + y if self.res else y


class EffNetLite(nn.Module):  # EfficientNet-B0's first five stages (+head), 1x3x192x192
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU())
        cfg = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5)]
        blocks, c = [], 32
        for e, co, n, s, k in cfg:
            for i in range(n):
                blocks.append(MBConv(c, co, k, s if i == 0 else 1, e))
                c = co
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(c, 320, 1, bias=False), nn.BatchNorm2d(320), nn.SiLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(320, 100))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class DenseLayer(nn.Module):
    def __init__(self, ci, k, bs=4):
        super().__init__()
        self.b1, self.c1 = nn.BatchNorm2d(ci), nn.Conv2d(ci, bs * k, 1, bias=False)
        self.b2, self.c2 = nn.BatchNorm2d(bs * k), nn.Conv2d(bs * k, k, 3, padding=1, bias=False)

    def forward(self, x):
        return self.c2(F.relu(self.b2(self.c1(F.relu(self.b1(x))))))


class DenseNetSmall(nn.Module):  # 2 dense blocks of 6 layers, growth 16, transition; 1x3x128x128
    def __init__(self, k=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True))
        c = 32
        self.block1 = nn.ModuleList()
        for _ in range(6):
            self.block1.append(DenseLayer(c, k)); c += k
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(True), nn.Conv2d(c, c // 2, 1, bias=False),
                                   nn.AvgPool2d(2))
        c //= 2
        self.block2 = nn.ModuleList()
        for _ in range(6):
            self.block2.append(DenseLayer(c, k)); c += k
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        for l in self.block1:
            x = torch.cat([x, l(x)], 1)
        x = self.trans(x)
        for l in self.block2:
            x = torch.cat([x, l(x)], 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1), 1))


class CALayer(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.du = nn.Sequential(nn.Conv2d(c, c // r, 1), nn.ReLU(True), nn.Conv2d(c // r, c, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.du(self.pool(x))


class RCAB(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True), nn.Conv2d(c, c, 3, padding=1),
                                  CALayer(c))

    def forward(self, x):
        return x + self.body(x)


class RCANSmall(nn.Module):  # 2 residual groups × 4 RCABs, 64 ch, x2 PixelShuffle; 1x3x96x96
    def __init__(self, c=64, groups=2, blocks=4):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.groups = nn.ModuleList(
            nn.Sequential(*[RCAB(c) for _ in range(blocks)], nn.Conv2d(c, c, 3, padding=1)) for _ in range(groups))
        self.body_tail = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x):
        x = self.head(x)
        r = x
        for g in self.groups:
            r = r + g(r)
        return self.up(self.body_tail(r) + x)


class DilatedSeg(nn.Module):  # stride-8 backbone, dilated 2/4/8 context module, 1x1 classifier, bilinear up
    def __init__(self, ncls=21):
        super().__init__()
        self.backbone = nn.Sequential(cbr(3, 32, 3, 2), cbr(32, 32), cbr(32, 64, 3, 2), cbr(64, 64),
                                      cbr(64, 128, 3, 2), cbr(128, 128))
        self.context = nn.Sequential(cbr(128, 128, 3, 1, 2), cbr(128, 128, 3, 1, 4), cbr(128, 128, 3, 1, 8),
                                     cbr(128, 128, 3, 1, 1))
        self.cls = nn.Conv2d(128, ncls, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        return F.interpolate(self.cls(self.context(self.backbone(x))), size=(h, w), mode='bilinear',
                             align_corners=False)


class ShuffleUnit(nn.Module):  # ShuffleNetV2 unit, stride 1 (channel split + shuffle)
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.b = nn.Sequential(nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(True),
                               nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h),
                               nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(True))

    def forward(self, x):
        a, b = x.chunk(2, 1)
        y = torch.cat([a, self.b(b)], 1)
        n, c, hh, ww = y.shape
        return y.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)


class ShuffleSmall(nn.Module):  # 1x3x160x160
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1), cbr(24, 96, 1))
        self.units = nn.Sequential(*[ShuffleUnit(96) for _ in range(4)])
        self.fc = nn.Linear(96, 10)

    def forward(self, x):
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


class RDB(nn.Module):  # ESRGAN's residual dense block: 5 convs over growing concatenations, residual scaled by 0.2
    def __init__(self, nf=64, gc=32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feats = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(self.act(y))
        return y * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf=64, gc=32):
        super().__init__()
        self.rdbs = nn.Sequential(RDB(nf, gc), RDB(nf, gc), RDB(nf, gc))

    def forward(self, x):
        return self.rdbs(x) * 0.2 + x


class RRDBNet(nn.Module):  # ESRGAN / Real-ESRGAN's generator, x4 by two nearest-neighbour upsamplings; 6 RRDBs
    def __init__(self, nf=64, gc=32, blocks=6):
        super().__init__()
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up1, self.conv_up2 = nn.Conv2d(nf, nf, 3, padding=1), nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_hr, self.conv_last = nn.Conv2d(nf, nf, 3, padding=1), nn.Conv2d(nf, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.act(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.act(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


MODELS = {
    "srcnn": (SRCNN, (1, 3, 128, 128)),
    "fsrcnn": (FSRCNN, (1, 3, 128, 128)),
    "espcn": (ESPCN, (1, 3, 128, 128)),
    "unet": (UNetSmall, (1, 3, 160, 160)),
    "vgg11bn": (VGG11BN, (1, 3, 112, 112)),
    "effnet": (EffNetLite, (1, 3, 192, 192)),
    "densenet": (DenseNetSmall, (1, 3, 128, 128)),
    "rcan": (RCANSmall, (1, 3, 96, 96)),
    "dilseg": (DilatedSeg, (1, 3, 192, 192)),
    "shufflenet": (ShuffleSmall, (1, 3, 160, 160)),
    "rrdbnet": (RRDBNet, (1, 3, 64, 64)),
}


def build(name, seed=0):
    """A model of MODELS, or "tv:NAME": torchvision.models.NAME (random weights) on 1×3×224×224 (torchvision
    must import; see survey.py)."""
    torch.manual_seed(seed)
    if name.startswith("tv:"):
        import torchvision
        cls, shape = getattr(torchvision.models, name[3:]), (1, 3, 224, 224)
    else:
        cls, shape = MODELS[name]
    m = cls()
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            mod.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            mod.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
        if isinstance(mod, nn.PReLU):
            mod.weight.data.uniform_(0.05, 0.3, generator=g)
    return m.eval(), shape
