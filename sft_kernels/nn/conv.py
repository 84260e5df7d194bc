from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops.conv2d import bound as conv2d_bound
from ..ops.conv2d.reference import epilogue
from ..runtime import autotune, registry
from ..runtime.layout import to_channels_last


def activation_of(m: nn.Module) -> Optional[tuple]:
    """("relu", 0.01), ("leaky_relu", slope), ("relu6", 0.01), ("silu", 0.01), ("hardswish", 0.01) or ("gelu" /
    "gelu_tanh", 0.01) for an nn.ReLU, nn.LeakyReLU, nn.ReLU6 (or an nn.Hardtanh clamping to [0, 6]), nn.SiLU,
    nn.Hardswish or nn.GELU module (exactly those types: a subclass may do more), as the convs' fused epilogues take
    them; else None."""
    if type(m) is nn.ReLU:
        return "relu", 0.01
    if type(m) is nn.LeakyReLU:
        return "leaky_relu", m.negative_slope
    if type(m) is nn.ReLU6 or (type(m) is nn.Hardtanh and (m.min_val, m.max_val) == (0.0, 6.0)):
        return "relu6", 0.01
    if type(m) is nn.SiLU:
        return "silu", 0.01
    if type(m) is nn.Hardswish:
        return "hardswish", 0.01
    if type(m) is nn.GELU and m.approximate in ("none", "tanh"):
        return ("gelu_tanh" if m.approximate == "tanh" else "gelu"), 0.01
    return None


def at_weight_precision(weight: torch.Tensor, *tensors):
    """Under autocast a converted layer runs at its weights' precision (our cpu kernels are float32; autocast does
    not reach inside the ops): a floating input that autocast made lower precision upstream is cast back, where
    F.conv2d would instead cast both to the autocast dtype. Outside autocast, dtypes pass unchanged (and a
    mismatch is an error, as in PyTorch)."""
    if not any(t is not None and t.dtype != weight.dtype for t in tensors) or \
            weight.device.type not in ("cpu", "cuda") or not torch.is_autocast_enabled(weight.device.type):
        return tensors
    return tuple(t.to(weight.dtype) if t is not None and t.is_floating_point() else t for t in tensors)


def mode_padded(x: torch.Tensor, pads, mode: str, zero=0.0) -> torch.Tensor:
    """`x` padded by (left, right, top, bottom) `pads` in nn.Conv2d's padding_mode ("zeros" pads with `zero`), in
    x's memory format. Circular padding is two concatenations: F.pad's circular mode gave NCHW output for
    channels_last input and took 1.9 ms for 64 channels at 128² on one Zen 4 core, the concatenations 0.27."""
    if mode == "zeros":
        return F.pad(x, pads, value=zero)
    if mode != "circular":
        return F.pad(x, pads, mode=mode)
    left, right, top, bottom = pads
    if left or right:
        x = torch.cat([x[..., x.shape[-1] - left:], x, x[..., :right]], -1)
    if top or bottom:
        x = torch.cat([x[..., x.shape[-2] - top:, :], x, x[..., :bottom, :]], -2)
    return x


def explicit_padding(conv: nn.Conv2d) -> tuple:
    """(numeric padding for the conv itself, (left, right, top, bottom) padding of its input first or None) that
    compute what `conv`'s padding and padding_mode do: modes other than "zeros" pad it all first, as nn.Conv2d
    does; 'same' with an even kernel (or an odd dilation·(k-1)) pads the extra bottom row and right column first."""
    if conv.padding_mode != "zeros":
        return (0, 0), tuple(conv._reversed_padding_repeated_twice)
    if conv.padding == "valid":
        return (0, 0), None
    if conv.padding != "same":
        return tuple(conv.padding), None
    total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    left = tuple(t // 2 for t in total)
    extra = (total[1] - 2 * left[1], total[0] - 2 * left[0])
    return left, None if extra == (0, 0) else (0, extra[0], 0, extra[1])


# Conv2d's algorithm for "whichever of bf16, bf16 Winograd and the float32 choice measures fastest" (convert_'s
# fp32_precision="bf16" on AVX512-BF16 vectors for 3×3 stride-1 convs).
BF16_OR_FP32 = "bf16_or_fp32"
# The same without bf16 Winograd (fp32_precision="bf16_direct": the numerics of oneDNN's and OpenVINO's bf16).
BF16_DIRECT_OR_FP32 = "bf16_direct_or_fp32"
MEASURED = (BF16_OR_FP32, BF16_DIRECT_OR_FP32)


def measured_on_vectors(conv: nn.Conv2d) -> bool:
    """Whether, on AVX512-BF16 vectors, this conv's precision and algorithm are left to measurement: 3×3 stride-1
    undilated convs, where Winograd wins on large maps (64→64 at 128², 1 thread: float32 Winograd 4.2 ms, bf16
    Winograd 3.1, bf16 6.3) and bf16 on small ones (ResNet-50's 512→512 at 7²: bf16 1.9 ms, float32 3.3, bf16 Winograd
    2.2)."""
    return conv.kernel_size == (3, 3) and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)


class BoundCall(nn.Module):
    """Base of the modules that keep their kernel's call bound for the last input signature in `_fast` (Conv2d,
    SeparableConv2d, QuantConv2d): the call is dropped whenever the module changes (any attribute set: activation,
    backend, stride, a new weight...; any dtype or device move) and left out of the pickled and deep-copied state (a
    closure over the module's tensors)."""

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self.__dict__["_fast"] = None

    def _apply(self, fn, recurse=True):
        self.__dict__["_fast"] = None
        return super()._apply(fn, recurse)

    def __getstate__(self):
        return {**self.__dict__, "_fast": None}

    def bound_for(self, key):
        """The call kept by `keep_bound` for this key (an input signature), or None."""
        fast = self.__dict__.get("_fast")
        return fast[1] if fast is not None and fast[0] == key else None

    def keep_bound(self, key, fn) -> None:
        """Keeps fn (None: nothing) as the call for inputs of this key, in place of the last one."""
        self.__dict__["_fast"] = None if fn is None else (key, fn)


# Measured choices (Conv2d._measured_bf16) being timed again over their signature's next calls: {key: SecondLook}.
_LOOKS: dict = {}
autotune._ON_CLEAR.append(_LOOKS.clear)


class Conv2d(BoundCall, nn.Conv2d):
    """`nn.Conv2d` running on `sft.conv2d`, with an optional fused epilogue.

    Same constructor, parameters and state_dict keys as `nn.Conv2d`. Extra keyword-only options:
    ``activation`` (None or a name of ops.conv2d's: "relu", "silu", "gelu", ...), ``negative_slope``, ``backend``
    (None = fastest here) and ``algorithm`` (cpu: None/"auto", "direct", "winograd", "winograd_f2", "bf16",
    "bf16_winograd": see ops.conv2d; or "bf16_or_fp32": "bf16", "bf16_winograd" or None, whichever measures fastest on
    the first call of each input signature and again over its next calls ("bf16_direct_or_fp32": "bf16" or None), as
    the autotuner does, float32 with SFT_KERNELS_AUTOTUNE=0 or under torch.compile: convert_'s fp32_precision="bf16"
    ("bf16_direct") for 3×3 stride-1 convs on AVX512-BF16 vectors, where Winograd wins on large maps and the direct
    bf16 conv on small ones).
    ``forward(x, residual=None)`` computes ``act(conv(x) + bias) + residual``; its output is channels_last (the
    values are nn.Conv2d's; an NCHW input is laid out channels_last first, see `forward`); a model's last one hands
    its output back in the caller's layout (transforms/caller_layout.py).
    String padding ('same', 'valid') is F.conv2d's; padding modes other than "zeros" pad the input first, as
    nn.Conv2d does (`mode_padded`), and the conv then pads nothing.
    """

    def __init__(self, *args, activation: Optional[str] = None, negative_slope: float = 0.01,
                 backend: Optional[str] = None, algorithm: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation = activation
        self.negative_slope = negative_slope
        self.backend = backend
        self.algorithm = algorithm
        self._fast = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, backend: Optional[str] = None) -> "Conv2d":
        """A Conv2d sharing `conv`'s parameters (no copy), so state_dict keys and values are unchanged."""
        new = sharing_parameters(cls, conv, lambda k: False)
        new.activation, new.negative_slope, new.backend, new.algorithm = None, 0.01, backend, None
        new._fast = None
        return new

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if torch.jit.is_tracing():  # torch.jit.trace / the ONNX exporter: standard ops, the same function
            return _eager_forward(self, input, residual)
        return self._run(input, residual, self.weight, self.bias, self.activation, self.negative_slope)

    def _run(self, input: torch.Tensor, residual: Optional[torch.Tensor], weight: torch.Tensor,
             bias: Optional[torch.Tensor], activation: Optional[str], negative_slope: float,
             cache: bool = True) -> torch.Tensor:
        """act(conv(input; weight, bias)) + residual on our op. `cache`: keep the bound kernel of this call for the
        next ones of the same shape (`_fast`); only for calls whose weight and epilogue are the module's usual
        ones (FoldedConv2d's unfused path passes False)."""
        fn = None
        # (is_compiling first: under torch.compile the key's torch.get_num_threads() would break the graph)
        if cache and self.__dict__.get("_fast") is not None and not torch.compiler.is_compiling() \
                and type(input) is torch.Tensor:
            fn = self.bound_for(_fast_key(input, residual))
        if fn is not None and _no_grad_or_autocast(input, weight, residual):
            return fn(input, weight, bias, residual)
        if (self.backend is None and input.dim() == 4 and input.shape[2] == 1 and input.shape[3] == 1
                and residual is None and type(self.padding) is tuple
                and self.padding_mode == "zeros" and input.dtype == weight.dtype
                and not torch.is_autocast_enabled(input.device.type)):
            # a one-pixel map (squeeze-excitation, pooled heads): a matrix-vector product, where PyTorch's call
            # costs ~9 µs and the path through ours ~20 (docs/PERF_NOTES.md); both layouts are the same memory
            y = F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
            return y if activation is None else epilogue(y, activation, negative_slope)
        input, residual = at_weight_precision(weight, input, residual)
        input, padding, _ = self.pad_by_mode(input)
        # Layout policy: activations stay channels_last between our convs whatever the caller passes (as in a
        # model moved to channels_last): an NCHW input is laid out once here, and every later conv, activation
        # and add sees channels_last tensors, instead of each conv converting in and back out.
        laid_out = to_channels_last(input)
        algorithm = self.algorithm
        if algorithm in MEASURED:
            algorithm = self._measured_bf16(laid_out, residual, weight, bias, padding, activation, negative_slope,
                                            winograd=algorithm == BF16_OR_FP32)
            if isinstance(algorithm, autotune.SecondLook):  # the choice is being timed again: no bound call yet
                return algorithm(laid_out, residual, weight, bias)
        y = ops.conv2d(laid_out, weight, bias, self.stride, padding, self.dilation, self.groups,
                       activation=activation, negative_slope=negative_slope, residual=residual,
                       backend=self.backend, algorithm=algorithm)
        if cache and laid_out is input and self.padding_mode == "zeros" and type(input) is torch.Tensor \
                and input.is_cpu and not torch.compiler.is_compiling() \
                and _no_grad_or_autocast(input, weight, residual):
            fn = conv2d_bound(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                              activation, negative_slope, residual, self.backend, algorithm)
            if fn is not None:
                self.keep_bound(_fast_key(input, residual), fn)
        return y

    def _measured_bf16(self, x: torch.Tensor, residual: Optional[torch.Tensor], weight: torch.Tensor,
                       bias: Optional[torch.Tensor], padding, activation: Optional[str], slope: float,
                       winograd: bool = True):
        """algorithm "bf16_or_fp32" for this call: "bf16", "bf16_winograd" (`winograd`, for undilated 3×3 stride-1
        ungrouped convs) or None (float32), timed on the first call of a signature (autotune.pick); then, over the
        next calls, an `autotune.SecondLook` (returned instead of a name: it runs the call) times them again in the
        caller's steady state before the choice is final (one first-call timing of a noisy host had chosen bf16
        Winograd for ResNet-50's 7² conv in one process and the direct bf16 conv in another)."""
        if torch.compiler.is_compiling() or not autotune.enabled() or not x.is_cpu:
            return None
        key = (BF16_OR_FP32 if winograd else BF16_DIRECT_OR_FP32, x.shape, x.stride(), x.dtype, tuple(weight.shape),
               tuple(self.stride), tuple(padding), tuple(self.dilation), self.groups, bias is None, activation, slope,
               self.backend,
               None if residual is None else (residual.shape, residual.stride()), torch.get_num_threads())
        steady = _no_grad_or_autocast(x, weight, residual)  # (a call that builds a graph is not timed again)
        look = _LOOKS.get(key)
        if look is not None:
            return look if steady else (None if look.chosen == "fp32" else look.chosen)

        stride, dilation, groups, backend = self.stride, self.dilation, self.groups, self.backend

        def call(name):  # (the module's settings are in the key: every module of this signature shares the look)
            algorithm = None if name == "fp32" else name
            return lambda x, residual, weight, bias: ops.conv2d(
                x, weight, bias, stride, padding, dilation, groups, activation=activation, negative_slope=slope,
                residual=residual, backend=backend, algorithm=algorithm)
        names = ["fp32", "bf16"]
        if winograd and self.groups == 1 and measured_on_vectors(self):
            names.append("bf16_winograd")
        fresh = key not in autotune.choices()
        chosen = autotune.pick(key, names, lambda name: call(name)(x, residual, weight, bias))
        if fresh and steady and key in autotune.choices():
            look = _LOOKS[key] = autotune.SecondLook(key, chosen, names, call, lambda name: _LOOKS.pop(key, None))
            return look
        return None if chosen == "fp32" else chosen

    def pad_by_mode(self, x: torch.Tensor, modulation: Optional[tuple] = None) -> tuple:
        """(x, padding, modulation) as the kernels take them: with a padding mode other than "zeros", x padded here
        (its modulation applied first) and no padding left for the conv."""
        if self.padding_mode == "zeros":
            return x, self.padding, modulation
        if modulation is not None:
            x = x * (modulation[0] + 1) + modulation[1]
        return mode_padded(x, self._reversed_padding_repeated_twice, self.padding_mode), 0, None

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.activation:
            s += f", activation={self.activation!r}"
        return s + f", backend={self.backend!r}"


class EagerConv2d(nn.Conv2d):
    """nn.Conv2d with the converted convs' fused epilogue in plain PyTorch: ``forward(x, residual=None)`` computes
    ``act(conv(x) + bias) + residual``. `revert_` gives one back for a converted conv that carries an activation or
    takes a residual (`fuse_for_inference` folded them into it), so the reverted model computes what the converted
    one did; `convert_` makes it a Conv2d with the same epilogue again. Same parameters and state_dict keys."""

    def __init__(self, *args, activation: Optional[str] = None, negative_slope: float = 0.01, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation, self.negative_slope = activation, negative_slope

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "EagerConv2d":
        """An EagerConv2d sharing `conv`'s parameters, with its activation (if it has one)."""
        new = sharing_parameters(cls, conv, lambda k: k in ("backend", "algorithm", "_fast") or k.startswith("_sft"))
        new.activation = getattr(conv, "activation", None)
        new.negative_slope = getattr(conv, "negative_slope", 0.01)
        return new

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _eager_forward(self, input, residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", activation={self.activation!r}" if self.activation else "")


def _fast_key(x: torch.Tensor, residual: Optional[torch.Tensor]) -> tuple:
    """What decides a converted conv's kernel besides the module itself: the input's (and residual's) shape,
    strides and dtype, the thread count, the autotuner's generation and the backend knobs (as dispatch's memo)."""
    return (x.shape, x.stride(), x.dtype, None if residual is None else (residual.shape, residual.stride(),
                                                                         residual.dtype),
            torch.get_num_threads(), autotune.GENERATION[0], registry.env("SFT_KERNELS_BACKEND"),
            registry.env("SFT_KERNELS_AUTOTUNE"))


def _no_grad_or_autocast(x: torch.Tensor, weight: torch.Tensor, residual: Optional[torch.Tensor]) -> bool:
    """No autograd graph to build and no autocast to honour: the bound kernel may run directly."""
    if torch.is_autocast_enabled("cpu"):
        return False
    return not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad
                                               or (residual is not None and residual.requires_grad))


def sharing_parameters(cls, conv: nn.Conv2d, drop) -> nn.Module:
    """A `cls` module holding `conv`'s parameters, buffers and attributes (no copy; attributes `drop(name)` says
    are left out)."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.__dict__.update({k: v for k, v in conv.__dict__.items()
                         if k not in ("_parameters", "_buffers", "_modules") and not drop(k)})
    new._parameters, new._buffers, new._modules = conv._parameters, conv._buffers, conv._modules
    return new


def _eager_forward(conv: nn.Conv2d, x: torch.Tensor, residual: Optional[torch.Tensor]) -> torch.Tensor:
    """act(conv(x) + bias) + residual with the conv's fused activation, in plain PyTorch ops. Padding is made
    explicit (what torch.onnx writes for padding='same' with dilation, auto_pad SAME, onnxruntime refuses)."""
    padding, pre_pad = explicit_padding(conv)
    if pre_pad is not None:
        x = mode_padded(x, pre_pad, conv.padding_mode)
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)
    return epilogue(y, conv.activation, conv.negative_slope, residual)
