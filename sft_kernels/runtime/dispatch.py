"""The one path every op's call takes: checks -> backend resolution -> validated-signature memo -> measured backend
choice -> the backend called directly, or the op's `torch.library` op.

An op (ops/<op>/__init__.py) builds one `Op` from its library op and its backends' implementations, and its public
function calls `dispatch`. Implementations take the call's tensors first, then its other arguments normalised by
the op's checks (`consts`), and the library op takes the same plus the backend name last:

    impl(*tensors, *consts)              library_op(*tensors, *consts, backend)

Eager repeats of a call already validated (same `sig`: shapes, strides, dtypes, devices and the other arguments
as passed) skip the checks and the backend choice: after a large kernel the interpreter runs with cold caches
and each attribute read costs ~0.7 µs, the full path ~35 µs (7 % of a 0.45 ms conv). The library op (with its
fake kernel and autograd) runs under torch.compile, for tensor subclasses and when a gradient is needed; the
direct call saves its ~20 µs of dispatch otherwise.
"""
from __future__ import annotations

from typing import Callable, Hashable, Optional, Sequence

import torch

from . import autotune as _autotune
from . import registry

# Tensor types an op may hand to its backend directly: nn.Parameter disables __torch_function__, so it runs
# every op as the plain tensor it wraps (a module's weight is one, and every converted conv passes it).
PLAIN = (torch.Tensor, torch.nn.Parameter)
_MEMO_LIMIT = 4096
_AUTOCAST_DEVICES = ("cpu", "cuda")  # others (meta) have no autocast state to ask about


class Op:
    """An op's dispatch entry: its name in the registry, its torch.library op, one implementation per backend."""

    def __init__(self, name: str, library_op: Callable, impls: dict, autotune: bool = True,
                 binders: Optional[dict] = None, narrow: Optional[Callable] = None):
        """`autotune`: whether backend=None times the candidate backends (else the registry's static order).
        `binders`: {backend: bind(consts) -> fn(*tensors)}, an implementation specialised to one signature's
        arguments once, so memo hits skip the per-call argument translation (the cpu conv's op codes).
        `narrow(consts, candidates)`: the candidates worth timing for one call's arguments (a backend's definition
        of an algorithm that another runs far faster is left out)."""
        self.name, self.library_op, self.impls, self.autotune = name, library_op, impls, autotune
        self.binders = binders or {}
        self.narrow = narrow
        self.memo: dict = {}  # validated signature -> (implementation, consts, backend name)
        _autotune._ON_CLEAR.append(self.memo.clear)  # it holds autotune's decisions too

    def __repr__(self):
        return f"Op({self.name!r}, backends={sorted(self.impls)})"


def direct_call_ok(tensors: Sequence) -> bool:
    """True when the backend may be called directly instead of through the library op: eager plain tensors (or
    parameters) that need no autograd. torch.compile, other tensor subclasses (fake tensors) and autograd still
    go through the op."""
    if torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) not in PLAIN or (grad and t.requires_grad)):
            return False
    return True


def dispatch(op: Op, backend: Optional[str], tensors: tuple, sig: Optional[Hashable],
             check: Callable[[], tuple], primary: torch.Tensor):
    """Run one call of `op`.

    tensors: the call's tensor arguments in the implementations' order (None where absent).
    sig: everything else that decides the call (see the module docstring), or None to skip the memo. The op builds
        it only for plain tensors / parameters outside torch.compile (`eager_signature_ok`), so a memo hit needs
        only the autograd check before the direct call.
    check: runs the op's argument checks; returns the other arguments normalised (the consts). Called only when
        `sig` is not in the memo.
    primary: the tensor whose device and dtype choose the backend.

    Autocast does not reach inside an op: every backend computes in its inputs' dtypes (the reference backend's
    F.conv2d would otherwise switch to bfloat16 where the cpu kernel stays float32).
    """
    device = primary.device.type if isinstance(primary, torch.Tensor) else None  # a bad argument: checks say so
    if device in _AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return dispatch(op, backend, tensors, sig, check, primary)
    if sig is not None:
        sig = _full(sig, backend)
        hit = op.memo.get(sig)
        if hit is not None and not (torch.is_grad_enabled() and _needs_grad(tensors)):
            return hit[0](*tensors, *hit[1])
    consts = check()
    name = registry.resolve_for(backend, op.name, primary)
    second_look = None
    if backend is None and op.autotune and sig is not None and _autotune.enabled() \
            and not torch.compiler.is_compiling():
        cands = registry.candidates(op.name, primary.device, primary.dtype)
        if op.narrow is not None:
            cands = op.narrow(consts, cands)
            name = cands[0] if name not in cands else name
        if len(cands) > 1:
            key = (op.name, sig)
            fresh = key not in _autotune._CHOICES
            # candidates run as the call itself will: directly where it may (the library op's first call imports
            # torch._dynamo, 2 s of a converted model's first forward)
            direct = direct_call_ok(tensors)
            name = _autotune.pick(key, cands, lambda b: op.impls[b](*tensors, *consts) if direct
                                  else op.library_op(*tensors, *consts, b), device=primary.device)
            if fresh and primary.device.type == "cpu" and key in _autotune._CHOICES:
                second_look = _autotune.SecondLook(key, name, cands, lambda b: _bound(op, b, consts),
                                                   lambda b: _remember(op, sig, b, consts))
    if second_look is not None and len(op.memo) < _MEMO_LIMIT:
        op.memo[sig] = (second_look, (), name)
    elif sig is not None:
        _remember(op, sig, name, consts)
    if direct_call_ok(tensors):
        return op.impls[name](*tensors, *consts)
    return op.library_op(*tensors, *consts, name)


def _full(sig: Hashable, backend: Optional[str]) -> tuple:
    """The memo key: the op's signature and what else decides the backend."""
    return (sig, backend, registry.env("SFT_KERNELS_BACKEND"), registry.env("SFT_KERNELS_AUTOTUNE"),
            torch.get_num_threads())


def memo_entry(op: Op, backend: Optional[str], sig: Hashable) -> Optional[tuple]:
    """The memo's (fn, consts, backend name) for an op signature whose backend choice is final, else None (not
    run yet, or a second look still measuring)."""
    hit = op.memo.get(_full(sig, backend))
    return None if hit is None or isinstance(hit[0], _autotune.SecondLook) else hit


def _bound(op: Op, name: str, consts: tuple) -> Callable:
    """Backend `name`'s implementation of `op` with this signature's consts: fn(*tensors)."""
    bind = op.binders.get(name)
    if bind is not None:
        return bind(consts)
    impl = op.impls[name]
    return lambda *tensors: impl(*tensors, *consts)


def _remember(op: Op, sig: Hashable, name: str, consts: tuple) -> None:
    """The memo entry that runs backend `name` for `sig` from now on."""
    if len(op.memo) < _MEMO_LIMIT or sig in op.memo:
        bind = op.binders.get(name)
        op.memo[sig] = (bind(consts), (), name) if bind is not None else (op.impls[name], consts, name)


def _needs_grad(tensors) -> bool:
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


def meta(t) -> Optional[tuple]:
    """A tensor's part of a signature: shape, strides, dtype and device (None for None)."""
    if t is None:
        return None
    return (t.shape, t.stride(), t.dtype, t.is_cpu or t.device)


def eager_signature_ok(*values) -> bool:
    """True when a memo key can hold these arguments as passed: plain tensors / parameters / None, and no
    torch.compile trace (where the op must go through the library op)."""
    if torch.compiler.is_compiling():
        return False
    for v in values:
        if v is not None and type(v) not in PLAIN:
            return False
    return True
