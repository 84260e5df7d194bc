"""Knowledge distillation: teacher SFTNet -> smaller student SFTNet.

The student is trained on the bundled photos with three losses (see `sft_kernels.train`):
ground-truth L1, output (pixel) distillation L1(S(x), T(x)), and feature distillation on the trunk
features through a 1×1 adapter when the widths differ. `compare()` measures how close a student's
output is to its teacher's (PSNR of S(x) against T(x) on the eval photos).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.datasets import EVAL_IMAGES, sr_pair
from ..metrics import psnr
from .loop import TrainConfig, forward_features, train

__all__ = ["distill", "compare", "forward_features"]


def distill(teacher: str, out: str, num_blocks: int = 8, channels: int = 32, steps: int = 1500,
            w_out: float = 1.0, w_feat: float = 0.5, progress: bool = True, **kwargs) -> dict:
    """Train a (num_blocks, channels) student from `teacher` (a shipped name or checkpoint path)."""
    cfg = TrainConfig(out=out, num_blocks=num_blocks, channels=channels, steps=steps, teacher=teacher,
                      w_out=w_out, w_feat=w_feat, **kwargs)
    return train(cfg, progress=progress)


@torch.no_grad()
def compare(student: torch.nn.Module, teacher: torch.nn.Module, names=EVAL_IMAGES,
            device: Optional[str] = "cpu") -> dict:
    """{image: PSNR (Y, crop 4) of the student's output against the teacher's output}."""
    student.eval()
    teacher.eval()
    out = {}
    for name in names:
        lr, _ = sr_pair(name)
        x = lr.unsqueeze(0).to(device)
        out[name] = psnr(student(x).clamp(0, 1).cpu(), teacher(x).clamp(0, 1).cpu(), crop_border=4)
    return out
