"""2:4 weights for the sparse tensor cores (csrc/cuda/sparse_conv2d/sparse24.h has the layout): the kept values and
their metadata words in mma.sp fragment order, made once per weight; and the inverse, which decodes the words the
way the hardware reads them (tests, and the emulated kernel).

The reduction runs over the KRSC weight with Cg padded to a multiple of 8 and R·S·Cg padded to a multiple of the
tile config's BK. Each aligned run of 4 steps must hold at most 2 nonzeros (`transforms.prune.masks.n_m(w, 2, 4)`
makes such weights: its runs are 4 consecutive input channels of one tap, which the padding keeps aligned when Cg
is a multiple of 4). A run with fewer keeps zeros at the lowest free positions: positions stay in increasing order,
as mma.sp::ordered_metadata requires.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

SELECTOR_LANES = (0, 1)  # sparsity selector 0: lanes 4i and 4i + 1 of each quad hand in the metadata


def reduction_layout(w: torch.Tensor, bk: int) -> torch.Tensor:
    """[K, R·S·Cg8 padded to a multiple of bk]: the KRSC weight the kernel reduces over."""
    k, cg, r, s = w.shape
    cg8 = -(-cg // 8) * 8
    wk = F.pad(w.permute(0, 2, 3, 1), (0, cg8 - cg)).reshape(k, r * s * cg8)
    return F.pad(wk, (0, -(-wk.shape[1] // bk) * bk - wk.shape[1]))


def is_24(w: torch.Tensor) -> bool:
    """Whether every aligned run of 4 steps of the kernel's reduction (Cg padded to 8) holds at most 2 nonzeros."""
    wk = reduction_layout(w, 32)
    return bool(((wk != 0).view(wk.shape[0], -1, 4).sum(-1) <= 2).all())


def pack24(w: torch.Tensor, groups: int, bm: int, bk: int) -> Optional[tuple]:
    """(values [K, a_ld], metadata int32 [G·⌈Kg/bm⌉·k_tiles·bm·bk/16]) for tile config (bm, bk), or None when `w` is
    not 2:4 along its reduction."""
    wk = reduction_layout(w, bk)
    k, kpad = wk.shape
    runs = wk.view(k, kpad // 4, 4)
    nz = runs != 0
    if (nz.sum(-1) > 2).any():
        return None
    # two positions per run: the nonzeros first, then the lowest zeros; ascending
    pos = torch.arange(4, device=w.device)
    key = nz.to(torch.int64) * 8 + (3 - pos)
    idx = key.topk(2, dim=-1).indices.sort(-1).values
    values = runs.gather(-1, idx).reshape(k, kpad // 2).contiguous()
    nibble = idx[..., 0] | (idx[..., 1] << 2)  # [K, runs]
    meta16 = (nibble.view(k, kpad // 16, 4) << torch.tensor([0, 4, 8, 12], device=w.device)).sum(-1)  # [K, kpad/16]
    kg = k // groups
    mt, k_tiles = -(-kg // bm), kpad // bk
    rows = torch.full((groups, mt * bm, kpad // 16), 0x4444, dtype=torch.int64, device=w.device)  # pad rows: (0, 1)
    rows[:, :kg] = meta16.view(groups, kg, kpad // 16)
    # [G, mt, bm/16, 16, k_tiles, bk/32, 2] -> [G, mt, k_tiles, bm/16, bk/32, row in 16, half]
    m = rows.view(groups, mt, bm // 16, 16, k_tiles, bk // 32, 2).permute(0, 1, 4, 2, 5, 3, 6)
    lane = torch.arange(32, device=w.device)
    low = m[..., lane // 4, lane % 2]
    high = m[..., lane // 4 + 8, lane % 2]
    words = low | (high << 16)
    words = torch.where(words >= 2 ** 31, words - 2 ** 32, words)
    return values, words.to(torch.int32).reshape(-1).contiguous()


def unpack24(values: torch.Tensor, meta: torch.Tensor, shape: tuple, groups: int, bm: int, bk: int) -> torch.Tensor:
    """The dense [K, Cg, R, S] weight a kernel launched with tile config (bm, bk) multiplies by: each lane's word
    decoded as mma.sp reads it (rows lane/4 and lane/4 + 8, the 16 steps of half lane % 2; lanes 4i, 4i + 1)."""
    k, cg, r, s = shape
    cg8 = -(-cg // 8) * 8
    a_ld = values.shape[1]
    kpad, kg = 2 * a_ld, k // groups
    mt, k_tiles = -(-kg // bm), kpad // bk
    words = meta.to(torch.int64) & 0xFFFFFFFF
    words = words.view(groups, mt, k_tiles, bm // 16, bk // 32, 32)
    meta16 = torch.zeros(groups, mt, bm // 16, 16, k_tiles, bk // 32, 2, dtype=torch.int64, device=meta.device)
    for lane in range(32):
        if lane % 4 not in SELECTOR_LANES:
            continue  # not read under selector 0
        w_lane = words[..., lane].permute(0, 1, 3, 2, 4)  # [G, mt, bm/16, k_tiles, bk/32]
        meta16[:, :, :, lane // 4, :, :, lane % 2] = w_lane & 0xFFFF
        meta16[:, :, :, lane // 4 + 8, :, :, lane % 2] = w_lane >> 16
    meta16 = meta16.reshape(groups, mt * bm, kpad // 16)[:, :kg].reshape(k, kpad // 16)
    shifts = torch.tensor([0, 4, 8, 12], device=meta.device)
    nib = (meta16[..., None] >> shifts) & 0xF  # [K, kpad/16, 4 runs]
    idx = torch.stack([nib & 3, nib >> 2], -1).reshape(k, kpad // 4, 2)
    dense = torch.zeros(k, kpad // 4, 4, dtype=values.dtype, device=values.device)
    dense.scatter_(-1, idx, values.view(k, kpad // 4, 2))
    dense = dense.reshape(k, kpad)[:, :r * s * cg8].reshape(k, r, s, cg8)[..., :cg]
    return dense.permute(0, 3, 1, 2).contiguous()
