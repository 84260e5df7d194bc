"""Recursive Strassen–Winograd matrix multiply (7 multiplies, 15 additions per level), plain PyTorch.

Odd sizes are handled by dynamic peeling: the even-sized leading block goes through the recursion and the
last row/column (when a dimension is odd) is fixed up with thin products, so nothing is padded.
"""
import torch


def _winograd(a, b, levels, cutoff, mm=torch.matmul, last_level=None):
    m, k = a.shape
    n = b.shape[1]
    if levels <= 0 or min(m, k, n) <= cutoff or min(m, k, n) < 2:
        return mm(a, b)
    m2, k2, n2 = m - m % 2, k - k % 2, n - n % 2
    if (m2, k2, n2) != (m, k, n):  # dynamic peeling
        c = torch.empty(m, n, dtype=a.dtype, device=a.device)
        c[:m2, :n2] = _winograd(a[:m2, :k2], b[:k2, :n2], levels, cutoff, mm, last_level)
        if k2 != k:
            c[:m2, :n2] += mm(a[:m2, k2:], b[k2:, :n2])
        if n2 != n:
            c[:m2, n2:] = mm(a[:m2, :], b[:, n2:])
        if m2 != m:
            c[m2:, :] = mm(a[m2:, :], b)
        return c
    h, kk, w = m // 2, k // 2, n // 2
    if last_level is not None and (levels == 1 or min(h, kk, w) <= cutoff or min(h, kk, w) < 2):
        return last_level(a, b)  # the deepest level (its products would be leaves): one fused kernel
    a11, a12, a21, a22 = a[:h, :kk], a[:h, kk:], a[h:, :kk], a[h:, kk:]
    b11, b12, b21, b22 = b[:kk, :w], b[:kk, w:], b[kk:, :w], b[kk:, w:]
    # Winograd's variant: 8 pre-additions, 7 products, 7 post-additions.
    s1 = a21 + a22
    s2 = s1 - a11
    s3 = a11 - a21
    s4 = a12 - s2
    t1 = b12 - b11
    t2 = b22 - t1
    t3 = b22 - b12
    t4 = t2 - b21
    rec = lambda x, y: _winograd(x, y, levels - 1, cutoff, mm, last_level)  # noqa: E731
    p1 = rec(a11, b11)
    p2 = rec(a12, b21)
    p3 = rec(s4, b22)
    p4 = rec(a22, t4)
    p5 = rec(s1, t1)
    p6 = rec(s2, t2)
    p7 = rec(s3, t3)
    u2 = p1 + p6
    u3 = u2 + p7
    u4 = u2 + p5
    c = torch.empty(m, n, dtype=a.dtype, device=a.device)
    c[:h, :w] = p1 + p2
    c[:h, w:] = u4 + p3
    c[h:, :w] = u3 - p4
    c[h:, w:] = u3 + p5
    return c


def strassen_matmul(a, b, levels=None, cutoff=None, mm=torch.matmul, last_level=None):
    """C = A @ B for 2-D A (M×K) and B (K×N) by `levels` of Strassen–Winograd recursion (default: recurse
    while every dimension exceeds `cutoff`, default 128). `mm` multiplies the leaves (the cpu backend passes
    its own GEMM engine); `last_level(a, b)`, if given, replaces the deepest level for even sizes (the cpu
    backend's fused one-level kernel)."""
    cutoff = 128 if cutoff is None else int(cutoff)
    levels = 64 if levels is None else int(levels)
    return _winograd(a, b, levels, cutoff, mm, last_level)
