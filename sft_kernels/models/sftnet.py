"""SFTGAN's generator (Wang et al., "Recovering Realistic Texture in Image Super-resolution
by Deep Spatial Feature Transform", CVPR 2018), in its two public variants.

``SFTNet(variant="pytorch")`` is ``SFT_Net`` from the public SFTGAN ``architecture.py``;
``SFTNet(variant="torch")`` is ``SFT_Net_torch``, the network converted from the paper's
Lua-torch model. Both keep the public checkpoint key names, so ``load_state_dict`` accepts
those checkpoints unchanged::

    conv0.*                       3->64 3x3 head
    sft_branch.{0..15}.*          ResBlockSFT (sft0, conv0, sft1, conv1)
    sft_branch.16.*               SFTLayer (SFT_scale_conv0/1, SFT_shift_conv0/1)
    sft_branch.17.*               64->64 3x3 conv closing the trunk
    HR_branch.{0,3,6,8}.*         "pytorch": conv(64->256), PixelShuffle, ReLU, x2; conv, ReLU, conv
    HR_branch.{1,4,6,8}.*         "torch":   Upsample(nearest x2), conv(64->64), ReLU, x2; conv, ReLU, conv
    CondNet.{0,2,4,6,8}.*         condition network: seg (N,8,4H,4W) -> cond (N,32,H,W)

Only standard ``torch.nn`` modules hold weights (every conv is an ``nn.Conv2d``), so a
module-swapping converter can replace them; the SFT modulation, activations and residual
adds are plain tensor ops in ``forward``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.quantized import QuantConv2d
from ..runtime.checks import is_channels_last_strided
from . import checkpoint
from .fused import bf16_plan, fused_forward

__all__ = ["SFTNet", "CondNet", "SFTLayer", "ResBlockSFT", "background_seg",
           "NUM_CLASSES", "CLASS_NAMES", "VARIANTS"]

#: Segmentation classes, in the channel order the SFTGAN condition network expects.
CLASS_NAMES = ("background", "sky", "water", "grass", "mountain", "building", "plant", "animal")
NUM_CLASSES = len(CLASS_NAMES)
VARIANTS = ("pytorch", "torch")

# Per-variant constants, taken from the public SFTGAN architecture.py.
_SFT_SLOPE = {"pytorch": 0.1, "torch": 0.01}


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def background_seg(img: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """The one-hot "background" prior for ``img`` (N, C, H, W): a tensor (N, 8, scale*H, scale*W)
    on img's device and dtype whose channel 0 is 1 and whose other channels are 0; channels_last if img is (the
    layout rule the conv ops follow: the whole network stays in img's layout), allocated so, not copied."""
    if not isinstance(img, torch.Tensor) or img.dim() != 4:
        raise ValueError(f"img must be a 4-D tensor (N, C, H, W), got "
                         f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    n, _, h, w = img.shape
    fmt = torch.channels_last if is_channels_last_strided(img) else torch.contiguous_format
    seg = torch.empty((n, NUM_CLASSES, scale * h, scale * w), dtype=img.dtype, device=img.device,
                      memory_format=fmt).zero_()
    seg[:, 0] = 1
    return seg


class CondNet(nn.Sequential):
    """Condition network: segmentation probabilities (N, 8, 4H, 4W) -> SFT condition (N, 32, H, W).

    Conv(8->128, k4, s4), LeakyReLU, 3 x [Conv1x1(128->128), LeakyReLU], Conv1x1(128->32);
    the convs sit at indices 0, 2, 4, 6, 8 (keys ``CondNet.0.weight`` ... ``CondNet.8.bias``).
    """

    def __init__(self, negative_slope: float = 0.1):
        layers: list[nn.Module] = [nn.Conv2d(NUM_CLASSES, 128, 4, 4), nn.LeakyReLU(negative_slope)]
        for _ in range(3):
            layers += [nn.Conv2d(128, 128, 1), nn.LeakyReLU(negative_slope)]
        layers.append(nn.Conv2d(128, 32, 1))
        super().__init__(*layers)


class SFTLayer(nn.Module):
    """Spatial feature transform: (x, cond) -> x * (scale + 1) + shift  ("pytorch")
    or x * scale + shift ("torch"), where scale = conv1(leaky_relu(conv0(cond))) per branch.

    Takes the tuple ``(x, cond)`` (x: N,64,H,W; cond: N,32,H,W) and returns a tensor, as the
    public code does, so it can sit inside the ``sft_branch`` nn.Sequential.
    """

    def __init__(self, variant: str = "pytorch", channels: int = 64):
        super().__init__()
        self.variant = _check_variant(variant)
        self.negative_slope = _SFT_SLOPE[variant]
        self.SFT_scale_conv0 = nn.Conv2d(32, 32, 1)
        self.SFT_scale_conv1 = nn.Conv2d(32, channels, 1)
        self.SFT_shift_conv0 = nn.Conv2d(32, 32, 1)
        self.SFT_shift_conv1 = nn.Conv2d(32, channels, 1)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        fea, cond = x
        scale = self.SFT_scale_conv1(F.leaky_relu(self.SFT_scale_conv0(cond), self.negative_slope))
        shift = self.SFT_shift_conv1(F.leaky_relu(self.SFT_shift_conv0(cond), self.negative_slope))
        if self.variant == "pytorch":
            return fea * (scale + 1) + shift
        return fea * scale + shift

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, negative_slope={self.negative_slope}"


class ResBlockSFT(nn.Module):
    """Residual block with SFT, on the tuple (x, cond); returns (x + res, cond).

    "pytorch": res = conv1(sft1(relu(conv0(sft0(x)))))
    "torch":   res = conv1(relu(sft1(conv0(relu(sft0(x))))))
    """

    def __init__(self, variant: str = "pytorch", channels: int = 64):
        super().__init__()
        self.variant = _check_variant(variant)
        self.sft0 = SFTLayer(variant, channels)
        self.conv0 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.sft1 = SFTLayer(variant, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fea, cond = x
        if self.variant == "pytorch":
            res = F.relu(self.conv0(self.sft0((fea, cond))))
            res = self.conv1(self.sft1((res, cond)))
        else:
            res = self.conv0(F.relu(self.sft0((fea, cond))))
            res = self.conv1(F.relu(self.sft1((res, cond))))
        return fea + res, cond


def _hr_branch(variant: str, c: int = 64) -> nn.Sequential:
    """x4 upsampling tail, 64 -> 3 channels.

    Conv indices: "pytorch" 0, 3, 6, 8; "torch" 1, 4, 6, 8 (as in SFT_Net_torch)."""
    layers: list[nn.Module] = []
    for _ in range(2):
        if variant == "pytorch":
            layers += [nn.Conv2d(c, 4 * c, 3, 1, 1), nn.PixelShuffle(2), nn.ReLU()]
        else:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, 1, 1), nn.ReLU()]
    layers += [nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, 3, 3, 1, 1)]
    return nn.Sequential(*layers)


class SFTNet(nn.Module):
    """SFTGAN generator: x4 super-resolution of ``img`` (N, 3, H, W) in [0, 1], RGB, conditioned on
    segmentation probabilities ``seg`` (N, 8, 4H, 4W) in the order of ``CLASS_NAMES``.

    forward:  cond = CondNet(seg);  fea = conv0(img)
              fea = fea + sft_branch[17](sft_branch[16]((blocks 0..15 of (fea, cond))))
              out = HR_branch(fea)            # (N, 3, 4H, 4W), not clamped
    ``seg=None`` uses the one-hot background prior (``background_seg``).

    Parameters: 1,833,763 ("pytorch") / 1,612,195 ("torch").
    """

    def __init__(self, variant: str = "pytorch", num_blocks: int = 16, channels: int = 64):
        super().__init__()
        self.variant = _check_variant(variant)
        if num_blocks < 1 or channels < 1:
            raise ValueError(f"num_blocks and channels must be positive, got {num_blocks}, {channels}")
        self.num_blocks, self.channels = num_blocks, channels  # 16 / 64 = the public SFTGAN generator
        self.conv0 = nn.Conv2d(3, channels, 3, 1, 1)
        blocks: list[nn.Module] = [ResBlockSFT(variant, channels) for _ in range(num_blocks)]
        blocks += [SFTLayer(variant, channels), nn.Conv2d(channels, channels, 3, 1, 1)]
        self.sft_branch = nn.Sequential(*blocks)
        self.HR_branch = _hr_branch(variant, channels)
        # The condition network uses slope 0.1 in both public variants.
        self.CondNet = CondNet(0.1)

    def _check_inputs(self, img, seg):
        if not isinstance(img, torch.Tensor):
            raise TypeError(f"img must be a torch.Tensor, got {type(img).__name__}")
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"img must have shape (N, 3, H, W), got {tuple(img.shape)}")
        if not img.is_floating_point():
            raise TypeError(f"img must be a floating-point tensor (values in [0, 1]), got {img.dtype}")
        if img.shape[0] == 0 or img.shape[2] == 0 or img.shape[3] == 0:
            raise ValueError(f"img must be non-empty, got shape {tuple(img.shape)}")
        if seg is None:
            return background_seg(img)
        if not isinstance(seg, torch.Tensor):
            raise TypeError(f"seg must be a torch.Tensor or None, got {type(seg).__name__}")
        n, _, h, w = img.shape
        expected = (n, NUM_CLASSES, 4 * h, 4 * w)
        if seg.dim() != 4 or seg.shape[1] != NUM_CLASSES:
            raise ValueError(f"seg must have shape (N, {NUM_CLASSES}, 4H, 4W) = {expected}, "
                             f"got {tuple(seg.shape)}")
        if seg.shape[0] != n:
            raise ValueError(f"seg must have the same batch size as img: expected {n}, got {seg.shape[0]}")
        if tuple(seg.shape[2:]) != expected[2:]:
            raise ValueError(f"seg must be 4x the image size: expected (N, 8, 4H, 4W) = {expected}, "
                             f"got {tuple(seg.shape)}")
        if seg.device != img.device:
            raise ValueError(f"seg must be on the same device as img: img on {img.device}, seg on {seg.device}")
        if not seg.is_floating_point():
            raise TypeError(f"seg must be a floating-point tensor of probabilities, got {seg.dtype}")
        return seg

    #: Set by ``sft_kernels.convert_`` ("pytorch" variant): run the SFT-aware fused forward (same function).
    fused: bool = False

    def _sft_kernels_channel_groups(self) -> list:
        """The channel dependency groups of prune_channels_ (transforms/prune/channels.py): the residual trunk
        (conv0, every block's conv1 and sft_branch[17] write it; every SFT layer modulating it follows it; each
        block's conv0, sft_branch[17] and the HR branch read it), each block's inner channels (its conv0 writes
        them, its sft1 modulates them, its conv1 reads them), and the HR branch's (a PixelShuffle(2) producer
        keeps its 4 channels per shuffled channel together). The condition network is left whole."""
        from ..transforms.prune.channels import ChannelGroup

        def sft(prefix):
            return [(f"{prefix}.SFT_scale_conv1", 1), (f"{prefix}.SFT_shift_conv1", 1)]

        blocks = [f"sft_branch.{i}" for i in range(self.num_blocks)]
        n = self.num_blocks
        trunk_prod = [("conv0", 1), (f"sft_branch.{n + 1}", 1)] + [(f"{b}.conv1", 1) for b in blocks]
        trunk_prod += [p for b in blocks for p in sft(f"{b}.sft0")] + sft(f"sft_branch.{n}")
        hr = [i for i, m in enumerate(self.HR_branch) if isinstance(m, nn.Conv2d)]
        trunk_cons = [f"{b}.conv0" for b in blocks] + [f"sft_branch.{n + 1}", f"HR_branch.{hr[0]}"]
        main = ["conv0", f"sft_branch.{n + 1}"] + [f"{b}.conv{j}" for b in blocks for j in (0, 1)]
        main += [f"HR_branch.{hr[0]}"]
        groups = [ChannelGroup("trunk", self.conv0.out_channels, trunk_prod, trunk_cons, main)]
        for b in blocks:
            conv0 = self.get_submodule(f"{b}.conv0")
            groups.append(ChannelGroup(f"{b} inner", conv0.out_channels, [(f"{b}.conv0", 1)] + sft(f"{b}.sft1"),
                                       [f"{b}.conv1"], [f"{b}.conv0", f"{b}.conv1"]))
        for a, c in zip(hr[:-1], hr[1:]):
            shuffle = any(isinstance(m, nn.PixelShuffle) for m in list(self.HR_branch)[a + 1:c])
            r2 = 4 if shuffle else 1
            prod = self.HR_branch[a]
            groups.append(ChannelGroup(f"HR_branch.{a}->{c}", prod.out_channels // r2, [(f"HR_branch.{a}", r2)],
                                       [f"HR_branch.{c}"]))
        return groups

    def _sft_kernels_transformed(self, transform: str, applied: bool):
        """convert_ switches the "pytorch" variant to its fused forward (while every conv it runs is still a plain
        conv: a factorized or pruned-away one is not); revert_ and other transforms switch it back when needed."""
        fusable = self.variant == "pytorch" and all(
            isinstance(m, (nn.Conv2d, QuantConv2d)) for m in (self.conv0, *self.sft_branch.modules(), *self.HR_branch)
            if not isinstance(m, (nn.Sequential, nn.ModuleList, SFTLayer, ResBlockSFT, nn.ReLU, nn.LeakyReLU,
                                  nn.PixelShuffle, nn.Identity)))
        was = self.fused
        # int8 and pruned convs run fused too (modulation, uint8 hand-over, sparse kernels)
        if transform in ("convert_", "quantize_", "convert_qat_", "prune_"):
            self.fused = applied and fusable
        else:
            self.fused = self.fused and fusable
        if self.fused and not was:
            return "fused SFTNet forward"
        return "fused SFTNet forward off: its convs were transformed" if was and not self.fused else None

    def _sft_kernels_bf16_plan(self) -> dict:
        """{conv name: (bf16, why)} for convert_'s fp32_precision="bf16", where the fused forward runs convs in ways
        a per-conv rule cannot see (models/fused.py)."""
        return bf16_plan(self) if self.fused and self.variant == "pytorch" else {}

    def forward(self, img: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused and self.variant == "pytorch":
            if isinstance(img, torch.Tensor) and img.dim() == 4:  # the converted model's layout: see nn.Conv2d
                img = img.contiguous(memory_format=torch.channels_last)
            return fused_forward(self, img, self._check_inputs(img, seg))
        seg = self._check_inputs(img, seg)
        cond = self.CondNet(seg)
        fea = self.conv0(img)
        # Same computation as sft_branch((fea, cond)) in the public code, written out so the
        # tuple-passing blocks and the closing SFT layer + conv are explicit.
        trunk = self.trunk_features(fea, cond)
        return self.HR_branch(fea + trunk)

    def trunk_features(self, fea: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The trunk's output (before ``fea +``): what feature distillation matches between models."""
        x = (fea, cond)
        for i in range(self.num_blocks):
            x = self.sft_branch[i](x)
        return self.sft_branch[self.num_blocks + 1](self.sft_branch[self.num_blocks](x))

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, num_blocks={self.num_blocks}, channels={self.channels}"

    @classmethod
    def from_checkpoint(cls, path, variant: str | None = None) -> "SFTNet":
        """Load a checkpoint (.safetensors, or a public SFTGAN .pth state_dict). With ``variant`` the standard
        architecture of that variant is loaded strictly; without, the architecture comes from a model card beside
        the file (``<stem>.json`` with "architecture"), else from the checkpoint's keys (`architecture_of`).
        Missing or unexpected keys and shape mismatches raise ``WeightsError`` naming them."""
        if variant is not None:
            return checkpoint.load_weights(cls(variant), path).eval()
        arch = None
        card = Path(path).with_suffix(".json")
        if card.is_file():
            try:
                arch = json.loads(card.read_text()).get("architecture")
            except (OSError, ValueError):
                arch = None
        if arch is None:
            arch = architecture_of(checkpoint.read_state_dict(path), str(path))
        return checkpoint.load_weights(cls(arch["variant"], arch["num_blocks"], arch["channels"]), path).eval()

    @torch.no_grad()
    def reset_parameters_(self, seed: int = 0, std_scale: float = 1.0) -> "SFTNet":
        """Deterministic re-initialisation (PyTorch's default conv init drawn from a seeded
        generator, weights multiplied by ``std_scale``); returns self. Useful for tests that need
        the same random model on every machine."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                bound = 1.0 / fan_in ** 0.5  # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), +)
                w = (torch.rand(m.weight.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
                m.weight.copy_(w * std_scale)
                if m.bias is not None:
                    b = (torch.rand(m.bias.shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
                    m.bias.copy_(b)
        return self


def _out_weight(state_dict: dict, conv: str):
    """The tensor whose first dim is conv's output channels: its weight, or the last conv of the pair factorize_ /
    to_separable_ made of it, float or int8; None if the state_dict has none."""
    for key in ("weight", "h.weight", "pw.weight", "weight_int8", "h.weight_int8", "pw.weight_int8"):
        if f"{conv}.{key}" in state_dict:
            return state_dict[f"{conv}.{key}"]
    return None


def architecture_of(state_dict: dict, where: str = "the checkpoint") -> dict:
    """SFTNet's (variant, num_blocks, channels) from a state_dict's key names and shapes (a transformed model's
    too: factorized, separable or int8 convs)."""
    conv0 = _out_weight(state_dict, "conv0")
    if conv0 is None and "conv0.conv.weight" in state_dict:  # QATConv2d wrappers: a `train --qat` run's last.pt
        raise checkpoint.WeightsError(f"{where!r} is a quantization-aware training checkpoint (fake-quantized convs): "
                                      "load the int8 model the run wrote beside it (int8.safetensors)")
    if conv0 is None:
        raise checkpoint.WeightsError(f"{where!r} is not an SFTNet checkpoint (no 'conv0.weight')")
    variant = "pytorch" if _out_weight(state_dict, "HR_branch.0") is not None else "torch"
    blocks = {int(m.group(1)) for k in state_dict
              for m in [re.match(r"sft_branch\.(\d+)\.conv0\.(?:[hvdpw]+\.)?weight(?:_int8)?$", k)] if m}
    return dict(variant=variant, num_blocks=len(blocks), channels=int(conv0.shape[0]))
