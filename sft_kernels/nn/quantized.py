"""QuantConv2d: an int8 conv module (what `sft_kernels.quantize_` puts in place of an nn.Conv2d); QuantLinear, the
same for an nn.Linear (a 1×1 conv of one-pixel rows).

Weights int8, per-output-channel symmetric (w ≈ weight_int8[k] · weight_scale[k]); activations uint8, per-tensor
affine (x ≈ (x_q − input_zero_point) · input_scale), quantized inside the kernel as it copies its float input, so
the tensors between layers stay float32 (SFT modulation, residual adds and anything else a model does between its
convs run unchanged). Bias, the fused activation and a residual are applied in float in the kernel's store. With
``act_bits=16`` (W8A16) the activations stay float and the dequantized int8 weights run on sft.conv2d: no speed-up,
a quarter of the weight bytes, and almost none of the error (the budgeted fallback for sensitive layers).

Outputs are channels_last, as sft_kernels.nn.Conv2d's (the layout policy: an NCHW input is laid out once).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..runtime import registry
from ..runtime.layout import to_channels_last
from ..ops.conv2d.reference import epilogue
from .conv import BoundCall, explicit_padding, mode_padded
from .linear import rows_as_image


def quantize_weight(w: torch.Tensor) -> tuple:
    """Per-output-channel symmetric int8: (w_q int8 in [-127, 127], scale float32 [K]) with w ≈ w_q · scale."""
    w = w.detach().float()
    amax = w.reshape(w.shape[0], -1).abs().amax(1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    w_q = torch.clamp(torch.round(w / scale.view(-1, *([1] * (w.dim() - 1)))), -127, 127).to(torch.int8)
    return w_q, scale.to(torch.float32)


def pixel_shuffle_nhwc(y: torch.Tensor, r: int) -> torch.Tensor:
    """PixelShuffle of a channels_last tensor into a channels_last one (one copy; aten's goes through NCHW and was
    measured 28 ms on a 1×256×256×256 float map, 1 thread)."""
    n, c, h, w = y.shape
    if not y.is_contiguous(memory_format=torch.channels_last):
        return F.pixel_shuffle(y, r)
    t = y.permute(0, 2, 3, 1).view(n, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
    return t.reshape(n, h * r, w * r, c // (r * r)).permute(0, 3, 1, 2)


def winograd_geometry(conv: nn.Module) -> bool:
    """Whether a conv (nn.Conv2d or QuantConv2d) has a shape sft.qconv2d_winograd runs, and pays on: 3×3, stride 1,
    padding 1, ungrouped, at least 16 channels in and out (fewer outputs, as an RGB output conv, leave most of the
    32-channel panels idle: the direct conv's few-channel kernel is 3× faster there)."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and conv.groups == 1 and conv.in_channels >= 16
            and conv.out_channels >= 16)


def _int8_state(m: nn.Module, weight_shape: tuple, bias: bool, input_scale: float, input_zero_point: int,
                act_bits: int) -> None:
    """What QuantConv2d and QuantLinear both hold: the int8 weight, its per-output scales, the bias (buffers) and the
    input's quantization, checked."""
    k = weight_shape[0]
    m.register_buffer("weight_int8", torch.zeros(*weight_shape, dtype=torch.int8))
    m.register_buffer("weight_scale", torch.ones(k))
    m.register_buffer("bias", torch.zeros(k) if bias else None)
    if act_bits not in (8, 16):
        raise ValueError(f"act_bits must be 8 (int8 activations) or 16 (float activations, W8A16), got {act_bits}")
    if not input_scale > 0 or not 0 <= int(input_zero_point) <= 255:
        raise ValueError(f"input_scale must be > 0 and input_zero_point in [0, 255], got {input_scale}, "
                         f"{input_zero_point}")
    m.input_scale, m.input_zero_point, m.act_bits = float(input_scale), int(input_zero_point), act_bits
    m._w_float = None  # the dequantized weight of W8A16, made on first use


def _keep_float32(m: nn.Module) -> None:
    """After a dtype cast of the model (.double(), .half(), .to(torch.bfloat16)): the int8 layer's own scales and
    bias stay float32, what its kernels take; it computes in float32 and hands its float output back in the input's
    dtype."""
    for name in ("weight_scale", "bias"):
        t = m._buffers.get(name)
        if t is not None and t.dtype != torch.float32:
            m._buffers[name] = t.float()


def _in_dtype(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A float32 result in the floating dtype of the caller's input (float64, float16, bfloat16)."""
    return y.to(x.dtype) if y.dtype == torch.float32 and x.is_floating_point() and x.dtype != torch.float32 else y


class QuantConv2d(BoundCall):
    """int8 conv (see the module docstring). Build with `from_float(conv, input_scale, input_zero_point)`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, *, input_scale: float = 1.0, input_zero_point: int = 0,
                 act_bits: int = 8, activation: Optional[str] = None, negative_slope: float = 0.01,
                 backend: Optional[str] = None):
        super().__init__()
        pair = nn.modules.utils._pair
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = (pair(kernel_size), pair(stride), pair(padding),
                                                                      pair(dilation))
        r, s = self.kernel_size
        _int8_state(self, (out_channels, in_channels // groups, r, s), bias, input_scale, input_zero_point, act_bits)
        self.activation, self.negative_slope, self.backend = activation, negative_slope, backend
        # (left, right, top, bottom) padding of the input before the conv, in `padding_mode` (nn.Conv2d's modes, or
        # "zeros" for the extra row and column of an even kernel's 'same' padding): None when the kernel pads it all
        self.pre_pad: Optional[tuple] = None
        self.padding_mode = "zeros"
        # > 0: forward returns uint8 requantized with (out_scale, out_zero_point), the input parameters of the one
        # int8 conv that reads this output (quantize_ sets them where the model's graph shows such a pair)
        self.out_scale, self.out_zero_point = 0.0, 0
        # (scale, zero point) of a uint8 residual: the grid of the int8 conv that writes it (quantize_'s chains),
        # or None (a residual is float)
        self.residual_quant: Optional[tuple] = None
        # the Winograd-domain form (sft.qconv2d_winograd): its 16 input multipliers, or None for the direct conv
        self.winograd_mult: Optional[torch.Tensor] = None
        self._wino = None  # (u_q, u_scale) made from the int8 weight on first use

    def winograd_fits(self) -> bool:
        """Whether sft.qconv2d_winograd can run this conv: its geometry (winograd_geometry) and int8 activations."""
        return winograd_geometry(self) and self.act_bits == 8

    def set_winograd(self, mult: Optional[torch.Tensor]) -> None:
        """Run as sft.qconv2d_winograd with these 16 input multipliers (ops.qconv2d_winograd.calibrate_mult of
        uint8 inputs quantized with this conv's input scale and zero point), or as the direct conv (None). The
        transformed weights come from the int8 weight (dequantized), so checkpoints hold only the multipliers."""
        if mult is not None:
            if not self.winograd_fits():
                raise ValueError(f"{self.extra_repr()}: the Winograd form needs a 3×3 conv with stride 1, padding 1, "
                                 "no groups and at least 16 channels in and out")
            from ..ops.qconv2d_winograd import mult_ok

            mult = torch.as_tensor(mult, dtype=torch.int32).reshape(-1).cpu()
            if not mult_ok(mult):
                raise ValueError("winograd mult must hold 16 Q15 multipliers in [1, 32767]")
        self.winograd_mult, self._wino = mult, None

    def _winograd_weight(self) -> tuple:
        if self._wino is None:
            from ..ops.qconv2d_winograd import winograd_weight

            self._wino = winograd_weight(self.dequantized_weight())
        return self._wino

    @classmethod
    def from_float(cls, conv: nn.Conv2d, input_scale: float = 1.0, input_zero_point: int = 0, act_bits: int = 8,
                   backend: Optional[str] = None) -> "QuantConv2d":
        """Quantize `conv`'s weight (per-channel symmetric); keep its bias, geometry, padding and fused activation."""
        padding, pre_pad = explicit_padding(conv)
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding, conv.dilation,
                conv.groups, conv.bias is not None, input_scale=input_scale, input_zero_point=input_zero_point,
                act_bits=act_bits, activation=getattr(conv, "activation", None),
                negative_slope=getattr(conv, "negative_slope", 0.01), backend=backend)
        q.pre_pad, q.padding_mode = pre_pad, conv.padding_mode
        w_q, scale = quantize_weight(conv.weight)
        q.weight_int8.copy_(w_q)
        q.weight_scale.copy_(scale)
        if conv.bias is not None:
            q.bias.copy_(conv.bias.detach().float())
        return q.to(conv.weight.device)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale.view(-1, 1, 1, 1)

    def forward(self, input: torch.Tensor, residual: Optional[torch.Tensor] = None,
                modulation: Optional[tuple] = None) -> torch.Tensor:
        if residual is not None and residual.is_floating_point() and residual.dtype != torch.float32:
            residual = residual.float()
        elif residual is not None and residual.dtype == torch.uint8 and self.residual_quant is None:
            raise ValueError(f"{self.extra_repr()}: a uint8 residual needs residual_quant = (scale, zero point), the "
                             "grid it was quantized on")
        return _in_dtype(self.run(input, self.activation, self.negative_slope, residual, modulation, self.out_scale,
                                  self.out_zero_point), input)

    def run(self, input: torch.Tensor, activation: Optional[str], negative_slope: float = 0.01,
            residual: Optional[torch.Tensor] = None, modulation: Optional[tuple] = None, out_scale: float = 0.0,
            out_zero_point: int = 0, pixel_shuffle: int = 1) -> torch.Tensor:
        """The conv with another fused epilogue (a model's fused forward): act(conv(input·(scale+1)+shift) + bias)
        + residual; with out_scale > 0 (int8 only) requantized to uint8 with (out_scale, out_zero_point), as the
        next int8 conv's input; then PixelShuffle(pixel_shuffle) (a residual is shaped like the shuffled output, as
        in sft.conv2d)."""
        if self.pre_pad is not None:
            input, modulation = self.padded(input, modulation), None
        input = to_channels_last(input)
        if input.dtype not in (torch.float32, torch.uint8) or (input.dtype == torch.uint8 and self.act_bits == 16):
            input = input.float()  # uint8 input: already quantized with this conv's input scale and zero point
        rq = self.residual_quant if residual is not None and residual.dtype == torch.uint8 else None
        if rq is not None and self.act_bits == 16:
            residual, rq = (residual.float() - rq[1]) * rq[0], None
        if pixel_shuffle > 1 and self.act_bits == 16:
            y = pixel_shuffle_nhwc(self.run(input, activation, negative_slope, None, modulation), pixel_shuffle)
            return y if residual is None else y + residual
        if self.act_bits == 16:
            if self._w_float is None:
                self._w_float = self.dequantized_weight()
            return ops.conv2d(input, self._w_float, self.bias, self.stride, self.padding, self.dilation, self.groups,
                              activation=activation, negative_slope=negative_slope, residual=residual,
                              modulation=modulation, backend=self.backend)
        if self.winograd_mult is not None and modulation is None and input.is_cpu and self.backend in (None, "cpu",
                                                                                                         "reference"):
            u_q, u_scale = self._winograd_weight()
            return ops.qconv2d_winograd(input, u_q, u_scale, self.winograd_mult, self.bias,
                                        input_scale=self.input_scale, input_zero_point=self.input_zero_point,
                                        activation=activation, negative_slope=negative_slope, residual=residual,
                                        out_scale=out_scale, out_zero_point=out_zero_point,
                                        pixel_shuffle=pixel_shuffle, residual_quant=rq, backend=self.backend)
        buffers = self._buffers
        return _bound_or(self, input, residual, (self.stride, self.padding, self.dilation, self.groups),
                         (activation, negative_slope, out_scale, out_zero_point, rq),
                         modulation is None and pixel_shuffle == 1,
                         lambda: ops.qconv2d(input, buffers["weight_int8"], buffers["weight_scale"], buffers["bias"],
                                             self.stride, self.padding, self.dilation, self.groups,
                                             input_scale=self.input_scale, input_zero_point=self.input_zero_point,
                                             activation=activation, negative_slope=negative_slope,
                                             residual=residual, modulation=modulation, out_scale=out_scale,
                                             out_zero_point=out_zero_point, pixel_shuffle=pixel_shuffle,
                                             residual_quant=rq, backend=self.backend))

    def padded(self, x: torch.Tensor, modulation: Optional[tuple] = None) -> torch.Tensor:
        """`x` (float, or uint8 on this conv's input grid) padded by `pre_pad` in `padding_mode`, its modulation
        applied first; "zeros" pads uint8 input with the zero point, which stands for 0."""
        if modulation is not None:
            x = x.float() * (modulation[0] + 1) + modulation[1]
        return mode_padded(x, self.pre_pad, self.padding_mode,
                           zero=self.input_zero_point if x.dtype == torch.uint8 else 0.0)

    def _apply(self, fn, recurse=True):
        self._w_float = self._wino = None
        out = super()._apply(fn, recurse)
        _keep_float32(self)
        return out

    # The scalar quantization parameters travel in the state_dict as extra state.
    def get_extra_state(self):
        state = {"input_scale": self.input_scale, "input_zero_point": self.input_zero_point,
                 "act_bits": self.act_bits, "activation": self.activation, "negative_slope": self.negative_slope}
        if self.winograd_mult is not None:
            state["winograd_mult"] = self.winograd_mult.tolist()
        state["padding"] = list(self.padding)
        if self.pre_pad is not None:
            state.update(pre_pad=list(self.pre_pad), padding_mode=self.padding_mode)
        if self.out_scale:  # the uint8 output the next int8 conv reads (quantize_'s chains): its grid
            state.update(out_scale=self.out_scale, out_zero_point=self.out_zero_point)
        if self.residual_quant is not None:
            state["residual_quant"] = list(self.residual_quant)
        return state

    def set_extra_state(self, state):
        self.input_scale, self.input_zero_point = float(state["input_scale"]), int(state["input_zero_point"])
        self.act_bits, self.activation = int(state["act_bits"]), state["activation"]
        self.negative_slope = float(state["negative_slope"])
        # (states saved before these fields existed keep the padding the module was built with)
        self.padding = tuple(state.get("padding", self.padding))
        self.pre_pad = tuple(state["pre_pad"]) if state.get("pre_pad") is not None else None
        self.padding_mode = state.get("padding_mode", "zeros")
        self.out_scale = float(state.get("out_scale", 0.0))
        self.out_zero_point = int(state.get("out_zero_point", 0))
        rq = state.get("residual_quant")
        self.residual_quant = (float(rq[0]), int(rq[1])) if rq is not None else None
        self._w_float = None
        self.set_winograd(state.get("winograd_mult"))

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.pre_pad is not None:
            s += f", pre_pad={self.pre_pad} ({self.padding_mode})"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.act_bits == 16:
            return s + ", W8A16"
        return s + f", input_scale={self.input_scale:.4g}, input_zero_point={self.input_zero_point}" + (
            f", activation={self.activation!r}" if self.activation else "") + (
            f", uint8 out (scale={self.out_scale:.4g}, zero_point={self.out_zero_point})" if self.out_scale else "") + (
            f", uint8 residual (scale={self.residual_quant[0]:.4g}, zero_point={self.residual_quant[1]})"
            if self.residual_quant is not None else "") + (
            ", Winograd F(2x2, 3x3)" if self.winograd_mult is not None else "")


class QuantLinear(BoundCall):
    """int8 Linear (what `sft_kernels.quantize_` puts in place of an nn.Linear, e.g. a classifier's head): int8
    weights, per-output-feature symmetric; activations uint8, per-tensor affine, quantized inside the kernel. It runs
    as sft.qconv2d's 1×1 conv with the input rows as the pixels of one image, so the weight is read as a quarter of
    the float bytes (a
    classifier's 1280 × 1000 head: 1.3 MB instead of 5.1). Float in, float out; ``act_bits=16`` (W8A16) runs
    F.linear on the dequantized weight. ``activation`` (quantize_ folds an nn.GELU / ReLU-like module after the
    Linear into it, ConvNeXt's MLP) is applied in the kernel's store. Build with `from_float(linear, input_scale,
    input_zero_point)`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, input_scale: float = 1.0,
                 input_zero_point: int = 0, act_bits: int = 8, backend: Optional[str] = None,
                 activation: Optional[str] = None, negative_slope: float = 0.01):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # kept as the 1×1 conv's [K, C, 1, 1] weight: one tensor, so its packed form is made once and cached
        _int8_state(self, (out_features, in_features, 1, 1), bias, input_scale, input_zero_point, act_bits)
        self.backend, self.activation, self.negative_slope = backend, activation, negative_slope

    @classmethod
    def from_float(cls, linear: nn.Linear, input_scale: float = 1.0, input_zero_point: int = 0, act_bits: int = 8,
                   backend: Optional[str] = None) -> "QuantLinear":
        """Quantize `linear`'s weight (per output feature, symmetric); keep its bias."""
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, input_scale=input_scale,
                input_zero_point=input_zero_point, act_bits=act_bits, backend=backend)
        w_q, scale = quantize_weight(linear.weight)
        q.weight_int8.copy_(w_q.view(q.weight_int8.shape))
        q.weight_scale.copy_(scale)
        if linear.bias is not None:
            q.bias.copy_(linear.bias.detach().float())
        return q.to(linear.weight.device)

    def dequantized_weight(self) -> torch.Tensor:
        """The float [out_features, in_features] weight the int8 one stands for."""
        return self.weight_int8.view(self.out_features, self.in_features).float() * self.weight_scale.view(-1, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear({self.in_features}, {self.out_features}) got an input with "
                             f"{input.shape[-1]} features (shape {tuple(input.shape)})")
        lead = input.shape[:-1]
        x = input.reshape(-1, self.in_features)
        x = x if x.dtype == torch.float32 else x.float()
        if self.act_bits == 16:
            if self._w_float is None:
                self._w_float = self.dequantized_weight()
            y = epilogue(F.linear(x, self._w_float, self.bias), self.activation, self.negative_slope)
        else:
            # The rows as the pixels of one channels_last image (a view): as M images of one pixel each, the
            # kernel ran image by image (ConvNeXt's 3136 × 96 -> 384 Linear: 3.95 ms against 0.6 as one image).
            y = self._int8(rows_as_image(x) if x.shape[0] else x.view(0, 1, 1, self.in_features).permute(0, 3, 1, 2))
            y = y.permute(0, 2, 3, 1).reshape(-1, self.out_features)
        return _in_dtype(y.reshape(*lead, self.out_features), input)

    def _int8(self, x: torch.Tensor) -> torch.Tensor:
        """The 1×1 int8 conv of the rows laid out as one channels_last image; its cpu kernel's call kept bound for
        the last input signature, as QuantConv2d keeps it."""
        buffers = self._buffers
        act, slope = self.activation, self.negative_slope
        return _bound_or(self, x, None, ((1, 1), (0, 0), (1, 1), 1), (act, slope, 0.0, 0, None), x.shape[0] > 0,
                         lambda: ops.qconv2d(x, buffers["weight_int8"], buffers["weight_scale"], buffers["bias"],
                                             input_scale=self.input_scale, input_zero_point=self.input_zero_point,
                                             activation=act, negative_slope=slope, backend=self.backend))

    def _apply(self, fn, recurse=True):
        self._w_float = None
        out = super()._apply(fn, recurse)
        _keep_float32(self)
        return out

    def get_extra_state(self):
        return {"input_scale": self.input_scale, "input_zero_point": self.input_zero_point, "act_bits": self.act_bits,
                "activation": self.activation, "negative_slope": self.negative_slope}

    def set_extra_state(self, state):
        self.input_scale, self.input_zero_point = float(state["input_scale"]), int(state["input_zero_point"])
        self.act_bits = int(state["act_bits"])
        # (checkpoints from before Linears took an activation have none)
        self.activation, self.negative_slope = state.get("activation"), float(state.get("negative_slope", 0.01))
        self._w_float = None

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        s += f", activation={self.activation!r}" if self.activation else ""
        if self.act_bits == 16:
            return s + ", W8A16"
        return s + f", input_scale={self.input_scale:.4g}, input_zero_point={self.input_zero_point}"


def _bound_or(q, x: torch.Tensor, residual: Optional[torch.Tensor], geometry: tuple, epilogue: tuple,
              eligible: bool, call):
    """call() (sft.qconv2d for int8 conv or linear `q`), or, for an input of the signature q's last call had, that
    call's cpu kernel with everything but the input and residual bound (kept in q._fast; `eligible`: this call's
    options allow one; in-place weight updates change the key: the buffers' version counters). geometry = (stride,
    padding, dilation, groups); epilogue = (activation, negative_slope, out_scale, out_zero_point, residual_quant)."""
    buffers = q._buffers
    w, ws, b = buffers["weight_int8"], buffers["weight_scale"], buffers["bias"]
    key = None
    if (eligible and type(x) is torch.Tensor and x.is_cpu and not torch.compiler.is_compiling()
            and not (torch.is_grad_enabled() and x.requires_grad)):
        key = (x.shape, x.stride(), x.dtype,
               None if residual is None else (residual.shape, residual.stride(), residual.dtype),
               *epilogue, w._version, ws._version, None if b is None else b._version,
               registry.env("SFT_KERNELS_BACKEND"))
        fast = q.__dict__.get("_fast")
        if fast is not None and fast[0] == key:
            if fast[1] is not None:
                return fast[1](x, residual)
            key = None  # this signature does not bind
    y = call()
    if key is not None:
        q.__dict__["_fast"] = (key, _bound_qconv2d(q, x, geometry, *epilogue))
    return y


def _bound_qconv2d(q, x: torch.Tensor, geometry: tuple, activation, negative_slope, out_scale, out_zero_point, rq):
    """The cpu kernel's call for this signature with everything but the input and residual bound
    (ops/qconv2d/cpu.py: bound), or None where sft.qconv2d would not run it directly (another backend, a
    channels_last result to copy back): what a call past the op's argument checks and dispatch (~10 µs of a ~25 µs
    call on a small map) leaves."""
    from ..ops.qconv2d import cpu as qcpu

    if registry.resolve_for(q.backend, "qconv2d", x) != "cpu" or not x.is_contiguous(memory_format=torch.channels_last):
        return None
    r_scale, r_zp = rq if rq is not None else (0.0, 0)
    return qcpu.bound(q._buffers["weight_int8"], q._buffers["weight_scale"], q._buffers["bias"], q.input_scale,
                      q.input_zero_point, *geometry, activation, negative_slope, out_scale, out_zero_point, r_scale,
                      r_zp)


def is_int8(m) -> bool:
    """An int8 conv with uint8 activations (not W8A16): one that can read, or write, a uint8 map."""
    return isinstance(m, QuantConv2d) and m.act_bits == 8
