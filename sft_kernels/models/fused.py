"""SFT-aware fused forward of SFTNet ("pytorch" variant), used after `sft_kernels.convert_`.

Same function as `SFTNet.forward`, fewer passes over memory:
  * each SFT layer's two first 1×1 convs run as one 32→64 conv (LeakyReLU fused); the second convs read
    their halves of it in place.
    (Batching all 33 layers into one 32→2112 conv was measured slower on the CPU: its 277 MB of scale/shift
    maps go to DRAM and back, where per-layer pairs of 4 MB maps stay in cache.)
  * each modulation x·(scale+1) + shift is computed with the layer's second convs in one op on AVX-512 CPUs
    (`ops.sft_modulation`: the scale and shift maps are never written), elsewhere fused into the conv that reads
    it (`ops.conv2d(modulation=...)`: applied as the input tiles are packed);
  * ReLU after conv0 of each residual block, the block's `x + res`, the trunk's `fea + trunk`, the HR branch's
    ReLUs and its PixelShuffles, and the condition network's LeakyReLUs are fused into the convs' epilogues (ReLU
    commutes with PixelShuffle).
The convs run on each module's backend/algorithm when converted (`sft_kernels.nn.Conv2d`), else backend=None; int8
ones (`sft_kernels.nn.QuantConv2d`, from quantize_) read each SFT layer's output as a uint8 map made by
`ops.qsft_modulation` (the layer's second convs, the modulation and the requantization in one op on the cpu; other
devices: the float maps, applied as the conv quantizes its input), and hand each other uint8 maps (requantized in
the store with the next conv's input parameters, pixel-shuffled in the store) where no float op sits between
them: along the HR branch and the condition network, from each SFT layer's first convs to its second, and from the
condition network to the 66 SFT convs that read its output (quantized once, since they share their input
parameters).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from ..nn.conv import MEASURED, Conv2d, activation_of, measured_on_vectors
from ..ops.conv2d.cpu import bf16_unit
from ..runtime.checks import ACTIVATIONS
from ..transforms.precision import bf16_skip_reason
from ..nn.quantized import QuantConv2d, is_int8
from ..nn.sparse import SparseConv2d


def _int8_chain(module, nxt) -> bool:
    """Whether `module` can hand `nxt` uint8 activations (both int8 convs): it then requantizes its output with the
    next conv's input scale and zero point in its store, and nothing float is written between them."""
    return is_int8(module) and is_int8(nxt)


def _shared_int8_reader(convs) -> Optional[QuantConv2d]:
    """The first of `convs` if all are 8-bit int8 convs with the same input scale and zero point (then one uint8 map
    serves them all), else None."""
    first = convs[0] if convs else None
    key = lambda c: (c.input_scale, c.input_zero_point)  # noqa: E731
    if first is not None and all(is_int8(c) and key(c) == key(first) for c in convs):
        return first
    return None


def _fusable_conv(m) -> bool:
    return isinstance(m, (Conv2d, QuantConv2d)) and getattr(m, "activation", None) is None


def run_sequential(seq: nn.Sequential, x: torch.Tensor, reader=None) -> torch.Tensor:
    """An nn.Sequential of convs and activations (SFTNet's condition network) with each ReLU / LeakyReLU / ReLU6
    fused into the conv before it and int8 convs handing uint8 maps to the int8 conv after them. reader: the int8
    conv that reads the output (requantized for it), or None for a float output. Other modules run as they are."""
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        if not _fusable_conv(m):
            x = m(x)
            i += 1
            continue
        own = getattr(m, "activation", None)  # one folded into the conv already (quantize_)
        act = activation_of(mods[i + 1]) if i + 1 < len(mods) and own is None else None
        j = i + 2 if act else i + 1
        nxt = mods[j] if j < len(mods) else reader
        act = act or (own, getattr(m, "negative_slope", 0.01))
        x = _conv(m, x, act[0], negative_slope=act[1], nxt=nxt)
        i = j
    return x


def _conv(module, x, activation=None, residual=None, negative_slope=0.01, weight=None, bias=None, groups=None,
          pixel_shuffle=1, modulation=None, nxt=None, algorithm=None):
    if isinstance(module, QuantConv2d):  # int8 (quantize_): modulation applied as the input is quantized
        out = (nxt.input_scale, nxt.input_zero_point) if _int8_chain(module, nxt) else (0.0, 0)
        # ReLU commutes with the shuffle
        return module.run(x, activation, negative_slope, residual, modulation, *out, pixel_shuffle=pixel_shuffle)
    if isinstance(module, SparseConv2d) and weight is None:  # pruned (prune_): the sparse kernel where it pays
        return module.run(x, activation, negative_slope, residual, modulation, pixel_shuffle)
    if weight is None and modulation is None and ((x.dtype == torch.bfloat16 and _bf16_direct(module))
                                                  or _bf16_handover(module, nxt, x)):
        # bf16 convs hand each other bf16 maps (half the bytes; the reader rounds its input to bf16 anyway, so the
        # bits are the same): the cpu kernel called directly, as dispatch takes float32 tensors only
        return torch.ops.sft_cpu.conv2d.default(
            x, module.weight, module.bias, list(module.stride), list(module.padding), list(module.dilation),
            module.groups, ACTIVATIONS.index(activation), float(negative_slope), residual, 4, pixel_shuffle, None,
            None, torch.bfloat16 if _bf16_handover(module, nxt, x) else None)
    return ops.conv2d(x, module.weight if weight is None else weight, module.bias if bias is None else bias,
                      module.stride, module.padding, module.dilation, module.groups if groups is None else groups,
                      activation=activation, negative_slope=negative_slope, residual=residual,
                      backend=getattr(module, "backend", None),
                      algorithm=algorithm or _op_algorithm(module),
                      pixel_shuffle=pixel_shuffle, modulation=modulation)


def sft_layers(model) -> list:
    """The SFT layers of the trunk, in the order the forward applies them."""
    layers = []
    for i in range(model.num_blocks):
        layers += [model.sft_branch[i].sft0, model.sft_branch[i].sft1]
    return layers + [model.sft_branch[model.num_blocks]]


def modulation(layer, cond: torch.Tensor) -> tuple:
    """(scale, shift) of one SFT layer: its two first convs run as one 32→64 conv (LeakyReLU fused), then
    each second conv reads its half of that output in place.
    (A 2-group conv for the second pair was measured ~2× slower than two convs on channel slices.)"""
    c0s, c0t, c1s, c1t = layer.SFT_scale_conv0, layer.SFT_shift_conv0, layer.SFT_scale_conv1, layer.SFT_shift_conv1
    # int8 or pruned weights: no concatenation to repack (each conv's packed weight is cached as it is)
    if isinstance(c0s, (QuantConv2d, SparseConv2d)) or isinstance(c0t, (QuantConv2d, SparseConv2d)):
        slope = layer.negative_slope
        return (_conv(c1s, _conv(c0s, cond, "leaky_relu", negative_slope=slope, nxt=c1s)),
                _conv(c1t, _conv(c0t, cond, "leaky_relu", negative_slope=slope, nxt=c1t)))
    h = _first_convs(layer, cond)
    mid = c0s.out_channels
    return _conv(c1s, h[:, :mid]), _conv(c1t, h[:, mid:])


def _first_convs(layer, cond: torch.Tensor) -> torch.Tensor:
    c0s, c0t = layer.SFT_scale_conv0, layer.SFT_shift_conv0
    both = _bf16(c0s) and _bf16(c0t) and type(c0s) is Conv2d and type(c0t) is Conv2d  # bf16_plan below
    return _conv(c0s, cond, "leaky_relu", negative_slope=layer.negative_slope,
                 weight=torch.cat([c0s.weight, c0t.weight]), bias=torch.cat([c0s.bias, c0t.bias]),
                 algorithm="bf16" if both else None)


def bf16_plan(model) -> dict:
    """convert_'s fp32_precision="bf16" for the convs as this forward runs them: {name: (plan, why)}, plan True for
    "bf16", False for float32, or an algorithm ("bf16_winograd": the 3×3 convs on AVX512-BF16 vectors).
    Each layer runs in one bf16 op (ops.sft_layer(bf16=True): 1.79 → 0.84 ms a layer against its first convs as one
    bf16 conv and sft_modulation(bf16=True)), though each 32→32 first conv alone would be memory-bound."""
    plan = {}
    if bf16_unit() == "vectors":  # AVX512-BF16 without AMX: Winograd beats the direct bf16 conv on SFTNet's 3×3 convs
        for name, m in model.named_modules():
            if not (isinstance(m, nn.Conv2d) and measured_on_vectors(m) and m.groups == 1):
                continue
            why = bf16_skip_reason(m, "vectors")  # the per-conv rule first (the RGB first conv stays float32)
            if why is not None:
                plan[name] = (False, why)
            elif m.out_channels >= 16:
                plan[name] = ("bf16_winograd", "3x3 stride 1 on AVX512-BF16 vectors: bf16 Winograd (1.4-1.5x our "
                                               "float32 Winograd, 2-2.5x the direct bf16 conv)")
            else:
                plan[name] = (False, "3x3 stride 1 with few outputs: our float32 Winograd is as fast as bf16 Winograd "
                                     "on AVX512-BF16 vectors (64→3 at 512²: 0.98-1.06x) and faster than direct bf16")
    for layer in sft_layers(model):
        prefix = next(n for n, m in model.named_modules() if m is layer)
        for name in ("SFT_scale_conv0", "SFT_shift_conv0", "SFT_scale_conv1", "SFT_shift_conv1"):
            plan[f"{prefix}.{name}"] = (True, "the whole SFT layer in one bf16 op (ops.sft_layer(bf16=True))")
    return plan


def _op_algorithm(module) -> Optional[str]:
    """The module's algorithm as ops.conv2d takes it ("bf16_or_fp32", a Conv2d's own measured choice, is never planned
    for SFTNet's convs: float32 if it meets one)."""
    algorithm = getattr(module, "algorithm", None)
    return None if algorithm in MEASURED else algorithm


def _bf16(conv) -> bool:
    """Whether a converted conv computes in bf16 (convert_'s fp32_precision="bf16")."""
    return getattr(conv, "algorithm", None) == "bf16"


def _bf16_direct(m) -> bool:
    """A bf16 cpu conv the kernel can be called for directly (zero padding given as numbers)."""
    return (type(m) is Conv2d and _bf16(m) and m.backend in (None, "cpu") and m.weight.is_cpu
            and m.padding_mode == "zeros" and type(m.padding) is tuple)


def _bf16_handover(module, nxt, x: torch.Tensor) -> bool:
    """Whether `module` writes its output for `nxt` in bf16: both bf16 cpu convs with zero padding, in eager
    inference (no autograd graph to build, no torch.compile trace: the direct kernel call has neither)."""
    return (nxt is not None and _bf16_direct(module) and _bf16_direct(nxt) and x.is_cpu
            and not torch.compiler.is_compiling()
            and not (torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad
                                                  or nxt.weight.requires_grad)))


_AVX512: Optional[bool] = None


def _avx512_cpu() -> bool:
    """Whether the cpu extension runs AVX-512 kernels here (ops.sft_modulation's tiles; elsewhere a portable loop,
    slower than the unfused path). Found once in eager mode; a torch.compile trace reads what was found (or takes
    the unfused path: it cannot import the extension)."""
    global _AVX512
    if _AVX512 is None:
        if torch.compiler.is_compiling():
            return False
        from ..runtime import registry

        try:
            registry.cpu_ext()
            _AVX512 = torch.ops.sft_cpu.gemm_config().startswith("isa=avx512")
        except Exception:  # noqa: BLE001 - no extension: the unfused path
            _AVX512 = False
    return _AVX512


def _float_pair(conv) -> bool:
    """An SFT layer's float conv that ops.sft_modulation runs: 1×1, stride 1, no padding, ungrouped, on the cpu."""
    return (type(conv) in (nn.Conv2d, Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1 and getattr(conv, "backend", None) in (None, "cpu")
            and conv.weight.dtype == torch.float32 and conv.weight.is_cpu)


def _int8_pair(conv) -> bool:
    """An SFT layer's second conv that qsft_modulation runs: int8, 1×1, stride 1, no padding, ungrouped, cpu."""
    return (is_int8(conv) and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.groups == 1 and conv.backend in (None, "cpu") and conv.weight_int8.is_cpu)


def modulated(layer, cond: torch.Tensor, x: torch.Tensor, reader) -> tuple:
    """(input, modulation) for `reader`, the conv that reads SFT layer `layer`'s output x·(scale + 1) + shift: for an
    int8 reader of an int8 layer, the uint8 input itself (ops.qsft_layer on a uint8 condition map, else
    ops.qsft_modulation after the first convs), for a float reader of a float layer on
    an AVX-512 cpu the modulated float map (ops.sft_modulation), with no modulation: the float scale and shift maps
    are never written; else x and the (scale, shift) maps, which the reader applies as it reads x."""
    c0s, c0t, c1s, c1t = layer.SFT_scale_conv0, layer.SFT_shift_conv0, layer.SFT_scale_conv1, layer.SFT_shift_conv1
    cpu_f32 = x.is_cpu and x.dtype == torch.float32
    if (cpu_f32 and not is_int8(reader) and all(_bf16(c) and type(c) is Conv2d for c in (c0s, c0t, c1s, c1t))
            and all(_float_pair(c) for c in (c0s, c0t, c1s, c1t)) and cond.dtype == torch.float32):
        # bf16 (fp32_precision="bf16"): the whole layer in one op, its mid maps never written (ops.sft_layer)
        return ops.sft_layer(x, cond, c0s.weight, c0s.bias, c0t.weight, c0t.bias, c1s.weight, c1s.bias, c1t.weight,
                             c1t.bias, negative_slope=layer.negative_slope, bf16=True), None
    if (cpu_f32 and not is_int8(reader) and all(_float_pair(c) for c in (c1s, c1t))
            and all(type(c) in (nn.Conv2d, Conv2d) for c in (c0s, c0t)) and _avx512_cpu()):
        h = _first_convs(layer, cond)  # float readers: the modulated map itself (ops.sft_modulation)
        mid = c0s.out_channels
        return ops.sft_modulation(x, h[:, :mid], c1s.weight, c1s.bias, h[:, mid:], c1t.weight, c1t.bias,
                                  bf16=_bf16(c1s) and _bf16(c1t)), None
    if not (cpu_f32 and is_int8(reader) and _int8_pair(c1s) and _int8_pair(c1t)):
        return x, modulation(layer, cond)
    slope = layer.negative_slope
    if cond.dtype == torch.uint8 and _int8_pair(c0s) and _int8_pair(c0t) and _same_input(c0s, c0t):
        # the whole layer in one op: the first convs' uint8 outputs stay in per-thread buffers (ops.qsft_layer)
        q = ops.qsft_layer(x, cond, _int8_conv(c0s), _int8_conv(c1s), _int8_conv(c0t), _int8_conv(c1t),
                           cond_input=(c0s.input_scale, c0s.input_zero_point),
                           s_input=(c1s.input_scale, c1s.input_zero_point),
                           t_input=(c1t.input_scale, c1t.input_zero_point), activation="leaky_relu",
                           negative_slope=slope, out_scale=reader.input_scale, out_zero_point=reader.input_zero_point)
        return q, None
    mid_s = _conv(c0s, cond, "leaky_relu", negative_slope=slope, nxt=c1s)
    mid_t = _conv(c0t, cond, "leaky_relu", negative_slope=slope, nxt=c1t)
    # quantize_ gives an int8 conv that reads an int8 conv a uint8 input; anything else comes here float
    mid_s, mid_t = (m if m.dtype == torch.uint8 else _quantized(m, c) for m, c in ((mid_s, c1s), (mid_t, c1t)))
    q = ops.qsft_modulation(x, mid_s, c1s.weight_int8, c1s.weight_scale, c1s.bias, mid_t, c1t.weight_int8,
                            c1t.weight_scale, c1t.bias, s_input=(c1s.input_scale, c1s.input_zero_point),
                            t_input=(c1t.input_scale, c1t.input_zero_point), out_scale=reader.input_scale,
                            out_zero_point=reader.input_zero_point)
    return q, None


def _same_input(a, b) -> bool:
    """Whether two int8 convs quantize their input alike (then one uint8 map serves both)."""
    return (a.input_scale, a.input_zero_point) == (b.input_scale, b.input_zero_point)


def _int8_conv(c) -> tuple:
    """(int8 weight, per-channel scales, bias) of an int8 conv, as ops.qsft_layer takes each conv."""
    return c.weight_int8, c.weight_scale, c.bias


def _quantized(m: torch.Tensor, conv) -> torch.Tensor:
    from ..ops.qconv2d.reference import quantize

    return quantize(m, conv.input_scale, conv.input_zero_point).contiguous(memory_format=torch.channels_last)


def fused_forward(model, img: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    layers = iter(sft_layers(model))
    readers = [c for layer in sft_layers(model) for c in (layer.SFT_scale_conv0, layer.SFT_shift_conv0)]
    cond = run_sequential(model.CondNet, seg, _shared_int8_reader(readers))
    fea = _conv(model.conv0, img)
    x = fea
    for i in range(model.num_blocks):  # each layer's maps made right before their reader: they stay in cache
        block = model.sft_branch[i]
        inp, mod = modulated(next(layers), cond, x, block.conv0)
        r = _conv(block.conv0, inp, "relu", modulation=mod)
        inp, mod = modulated(next(layers), cond, r, block.conv1)
        x = _conv(block.conv1, inp, residual=x, modulation=mod)
    last = model.sft_branch[model.num_blocks + 1]
    inp, mod = modulated(next(layers), cond, x, last)
    x = _conv(last, inp, residual=fea, modulation=mod)
    hr = model.HR_branch
    x = _conv(hr[0], x, "relu", pixel_shuffle=2, nxt=hr[3])
    x = _conv(hr[3], x, "relu", pixel_shuffle=2, nxt=hr[6])
    x = _conv(hr[6], x, "relu", nxt=hr[8])
    return _conv(hr[8], x)
