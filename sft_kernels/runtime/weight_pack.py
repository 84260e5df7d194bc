"""Weights re-laid out for a GPU kernel (KRSC for the CUDA conv, RSCK for Triton), cached while the weight lives.

    packed = weight_pack.packed(w, "cuda_krsc8", lambda w: ...)

Lifetimes, which matter once a CUDA graph has baked a packed weight's address into its kernels:
- Eager: the pack is held in a table keyed weakly by the weight tensor, so it lives exactly as long as the
  weight does and nothing is evicted early (no size bound; nothing in the weight's own __dict__ either, so
  torch.save and deepcopy of a model carry no packs). A pack that is a view of the weight is not stored. A
  weight changed in place (version counter), re-pointed (`.data =`, `.to()`, `.half()`) or re-strided is packed
  again on its next use.
- While a CUDA graph is being captured inside `hold_for_graph()` (as `compile_for_inference` does): a cached pack
  is used and added to the list the context yields, which the caller keeps as long as the graph, so the graph's
  baked-in address stays valid; weights are then frozen into the graph as packed at capture time.
- While a CUDA graph is being captured anywhere else: the pack is built inside the capture and not stored. Its
  memory belongs to the graph's private pool (alive as long as the graph), and each replay re-packs from the
  weight's current memory, so replays see in-place weight updates as they would with cuDNN.
- Under torch.compile, and for inference tensors (no version counter): built on every call, not stored.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Callable, Iterator, Optional

import torch


class WeakIdTable:
    """tensor -> dict by the tensor's identity, each entry removed when its tensor dies. A dict
    keyed by id() with a weak reference beside each value: a lookup is one dict get and one call of the reference
    (~0.1 µs; torch.utils.weak.WeakIdKeyDictionary's Python-level key objects took ~1.1 µs, paid on every op call
    that reads a packed weight)."""

    def __init__(self):
        self._d: dict = {}

    def get(self, w, default=None):
        e = self._d.get(id(w))
        return e[1] if e is not None and e[0]() is w else default

    def setdefault(self, w) -> dict:
        e = self._d.get(id(w))
        if e is not None and e[0]() is w:
            return e[1]
        key, d = id(w), self._d

        def drop(ref, key=key, d=d):
            if d.get(key, (None,))[0] is ref:  # not an entry a later tensor with the same id put there
                del d[key]

        self._d[key] = (weakref.ref(w, drop), {})
        return self._d[key][1]

    def __len__(self) -> int:
        return len(self._d)


_PACKS = WeakIdTable()  # weight -> {tag: (stamp, packed)}; an entry dies with its weight
_STATE = threading.local()  # .held: the list of hold_for_graph() on this thread, if inside one
_CUDA: Optional[bool] = None  # torch.cuda.is_available(), asked once (~0.6 µs a call)


@contextlib.contextmanager
def hold_for_graph() -> Iterator[list]:
    """Inside: packs used while a CUDA graph is captured come from the cache and are appended to the yielded list;
    keep the list as long as the graph (see the module docstring)."""
    prev, held = getattr(_STATE, "held", None), []
    _STATE.held = held
    try:
        yield held
    finally:
        _STATE.held = prev


def capturing() -> bool:
    """True while the current CUDA stream is capturing a graph."""
    global _CUDA
    if _CUDA is None:
        _CUDA = torch.cuda.is_available()
    return _CUDA and torch.cuda.is_current_stream_capturing()


def _stamp(w: torch.Tensor):
    try:
        version = w._version
    except RuntimeError:  # inference tensor: no version counter, so no way to see in-place changes
        return None
    return (version, w.data_ptr(), w.dtype, w.device, tuple(w.shape), w.stride())


def packed(w: torch.Tensor, tag: str, build: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`build(w)`, cached on `w` under `tag` while `w` is unchanged (see the module docstring)."""
    if torch.compiler.is_compiling():
        return build(w)
    held = getattr(_STATE, "held", None) if capturing() else False
    if held is None:  # a capture that nothing keeps packs alive for: pack inside it
        return build(w)
    stamp = _stamp(w)
    if stamp is None:
        return build(w)
    cache = _PACKS.get(w)
    hit = None if cache is None else cache.get(tag)
    if hit is not None and hit[0] == stamp:
        if held is not False:
            held.append(hit[1])
        return hit[1]
    if held is not False:  # not packed before the capture (e.g. a weight computed inside the graph)
        return build(w)
    out = build(w)
    if out.untyped_storage().data_ptr() == w.untyped_storage().data_ptr():
        return out  # a view of w (already in the packed layout): storing it would keep w alive forever
    if cache is None:
        cache = _PACKS.setdefault(w)
    cache[tag] = (stamp, out)
    return out


def _channels_last(w: torch.Tensor) -> torch.Tensor:
    return w.contiguous(memory_format=torch.channels_last)


def like_input(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The conv weight `w` in the layout of a channels_last input `x`, cached. ATen's conv lays an NCHW weight out
    as channels_last on every call with such an input: a 256→256 3×3 weight took ~0.5 ms a call, a third of the
    conv's own time at 14×14 (converted models run plain PyTorch convs where those win)."""
    if (x.dim() != 4 or w.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last)
            or w.is_contiguous(memory_format=torch.channels_last)):
        return w
    return packed(w, "channels_last", _channels_last)


def cached(w: torch.Tensor) -> dict:
    """{tag: packed tensor} held for `w` (tests, debugging)."""
    return {tag: v[1] for tag, v in _PACKS.get(w, {}).items()}


def sub_pixel_order(k: int, r: int) -> torch.Tensor:
    """The permutation putting output channel (i·r + j)·k/r² + c at PyTorch's c·r² + i·r + j: each output pixel's r²
    sub-pixels become runs of k/r² channels, so a kernel's store can write a run straight to its PixelShuffle(r)
    place."""
    return torch.arange(k).view(k // (r * r), r, r).permute(1, 2, 0).reshape(-1)


def sub_pixel(t: Optional[torch.Tensor], k: int, r: int, tag: str, dim: int = 0) -> Optional[torch.Tensor]:
    """t (a weight, scales or bias with k output channels along `dim`, first by default; None passes) in sub-pixel
    order, cached with t."""
    if t is None:
        return None
    return packed(t, tag, lambda v: v.index_select(dim, sub_pixel_order(k, r)).contiguous())
