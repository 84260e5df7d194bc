"""PruneConfig: what `prune_` removes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PATTERNS = ("unstructured", "n:m", "block", "channel")


@dataclass
class PruneConfig:
    """sparsity: the fraction of each pruned conv's weights set to zero, in [0, 1) (n:m: n/m is implied).
    pattern: "unstructured" (magnitude), "n:m" (n of every m consecutive input channels stay), "block" (blocks
    of `block` output channels pruned together; 4 matches the cpu kernel's output-channel block), "channel"
    (structured: `sparsity` of every dependency group's channels removed and the convs rebuilt smaller, kept
    counts a multiple of `multiple`; the model describes its groups, or prune_ traces them from `example`, see
    channels.py and trace.py).
    scope: "layer" (each conv loses `sparsity` of its weights) or "global" (one magnitude threshold over all
    pruned convs; unstructured only).
    min_out_channels: convs with fewer outputs (an SR model's RGB output conv) stay dense.
    backend: the backend the SparseConv2d modules run on (None: the fastest here)."""
    sparsity: float = 0.7
    pattern: str = "unstructured"
    scope: str = "layer"
    n: int = 2
    m: int = 4
    block: int = 4
    min_out_channels: int = 4
    multiple: int = 4
    backend: Optional[str] = None

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not isinstance(self.sparsity, (int, float)) or not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if self.scope == "global" and self.pattern != "unstructured":
            raise ValueError("scope='global' ranks single weights across layers: pattern='unstructured' only")
        if self.pattern == "n:m" and not (isinstance(self.n, int) and isinstance(self.m, int) and 0 < self.n <= self.m):
            raise ValueError(f"n:m needs integers 0 < n <= m, got n={self.n!r}, m={self.m!r}")
        if self.pattern == "block" and not (isinstance(self.block, int) and self.block >= 1):
            raise ValueError(f"block must be a positive int, got {self.block!r}")
