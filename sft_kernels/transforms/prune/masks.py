"""Which weights a pruning pattern keeps: boolean masks shaped like a conv weight (K, C/groups, R, S)."""
from __future__ import annotations

import torch


def _keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """A mask of the `keep` largest scores (ties broken by position), shaped like scores."""
    flat = scores.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.view_as(scores)


def unstructured(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Magnitude pruning: the round(sparsity · numel) smallest |w| go."""
    return _keep_top(w.detach().abs(), w.numel() - round(sparsity * w.numel()))


def global_unstructured(ws: list, sparsity: float) -> list:
    """Masks for all of `ws` at once: the round(sparsity · total) smallest |w| of them all go, exactly that many
    (equal magnitudes are taken in order; a threshold had pruned every weight equal to it, overshooting)."""
    flat = torch.cat([w.detach().abs().reshape(-1) for w in ws])
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, stable=True)[:round(sparsity * flat.numel())]] = False
    return [k.view(w.shape) for k, w in zip(keep.split([w.numel() for w in ws]), ws)]


def n_m(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M along the input channels: in each run of m consecutive input channels of every (k, r, s), the n largest
    |w| stay (NVIDIA's 2:4 pattern for m = 4, n = 2)."""
    k, c, r, s = w.shape
    if c % m:
        raise ValueError(f"N:M pruning groups {m} input channels at a time, but this conv has {c} per group; "
                         f"choose m dividing {c} or leave the layer out (filter_fn)")
    g = w.detach().abs().permute(0, 2, 3, 1).reshape(-1, m)
    idx = torch.topk(g, n, dim=1).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(1, idx, True)
    return mask.view(k, r, s, c).permute(0, 3, 1, 2).contiguous()


def block(w: torch.Tensor, sparsity: float, size: int) -> torch.Tensor:
    """Blocks of `size` consecutive output channels at one (c, r, s) are kept or pruned together, by the blocks'
    L2 norms (a last partial block counts as a block). The sparse kernel runs such a weight with 4 output
    channels per block sharing each input load."""
    k = w.shape[0]
    nb = -(-k // size)
    pad = nb * size - k
    wp = torch.cat([w.detach(), w.new_zeros((pad, *w.shape[1:]))]) if pad else w.detach()
    norms = wp.reshape(nb, size, *w.shape[1:]).pow(2).sum(1)
    keep = _keep_top(norms, norms.numel() - round(sparsity * norms.numel()))
    return keep.repeat_interleave(size, 0)[:k]
