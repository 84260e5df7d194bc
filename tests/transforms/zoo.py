"""Small CNNs the other tests do not build (MobileNetV2-, EDSR-like, odd convs), shared by the transform tests."""
import torch
import torch.nn.functional as F
from torch import nn


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, t=4):
        super().__init__()
        h = cin * t
        self.residual = stride == 1 and cin == cout
        self.b = nn.Sequential(nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                               nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                               nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.b(x) if self.residual else self.b(x)


def mobilenet():
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), InvRes(16, 16, 1), InvRes(16, 24, 2),
                         InvRes(24, 24, 1), nn.Conv2d(24, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


class EDSRish(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(True),
                                                nn.Conv2d(c, c, 3, padding=1)) for _ in range(2))
        self.up = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x):
        h = self.head(x)
        r = h
        for b in self.body:
            r = r + 0.1 * b(r)
        return self.up(r + h)


class OddConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, (1, 7), stride=(2, 1), padding=(0, 3), bias=False)
        self.b = nn.Conv2d(12, 24, 3, padding=2, dilation=2, groups=3)
        self.c = nn.Conv2d(24, 48, 3, padding="same", groups=24)  # depthwise, multiplier 2
        self.d = nn.Conv2d(48, 16, 1)
        self.e = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.f = nn.Conv2d(16, 8, 5, stride=3, padding=1)

    def forward(self, x):
        x = F.leaky_relu(self.a(x), 0.2)
        x = self.d(torch.relu(self.c(torch.relu(self.b(x)))))
        return self.f(F.gelu(self.e(x)))


class ResidualConvs(nn.Module):
    """h = a(x) (ReLU'd with relu=True); c(b(h) + h): fuse_for_inference makes it b(h, residual=h), a conv that reads
    one map both as its input and as its residual."""

    def __init__(self, relu: bool = False):
        super().__init__()
        self.relu = relu
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        h = self.a(x)
        h = torch.relu(h) if self.relu else h
        return self.c(self.b(h) + h)
