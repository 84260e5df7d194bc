"""The `cpu` backend of sft.qconv2d: the extension's int8 direct conv (csrc/cpu/qconv2d/: AMX tiles, AVX-512 VNNI,
AVX-VNNI at 256 bits, AVX2, a portable loop; `kernel()` says which runs). The weights are packed once per weight tensor (with their
per-channel sums, which carry the input zero point) and held as long as the weight lives (runtime.weight_pack).

Grouped convs: depthwise ones (groups = C = K) run on their own kernel (csrc/cpu/qconv2d/qdepthwise.cpp: per-channel
sums over the taps, 3×3 taps in vpmaddwd pairs); groups of 4, 8, 16 or 32 channels in and out on VNNI CPUs on the
grouped kernel (qgrouped.cpp: vectors over whole groups); other groupings run the dense kernel once per group on
that group's channel slice (weights packed per group, once)."""
from __future__ import annotations

import torch

from ...runtime import checks, registry, weight_pack


def kernel() -> str:
    """"amx", "vnni", "avxvnni", "avx2" or "generic": the integer kernel this process runs (SFT_KERNELS_INT8 forces
    one; "avxvnni" runs on AVX-512 VNNI CPUs too, in vpdpbusd's EVEX form at 256 bits)."""
    registry.cpu_ext()
    return torch.ops.sft_cpu.qconv2d_kernel()


def _pack(w_q):
    packed, wsum = torch.ops.sft_cpu.qconv2d_pack(w_q)
    return torch.cat([packed.view(torch.uint8), wsum.view(torch.uint8)])  # one tensor: weight_pack keeps tensors


def _split(both, k):
    """(packed int8 panels, int32 sums) of one _pack result for k output channels."""
    n_packed = both.numel() - -(-k // 32) * 32 * 4  # the int32 sums of whole 32-channel panels come last
    return both[:n_packed].view(torch.int8), both[n_packed:].view(torch.int32)


# A cached pack's split, dropped with the pack: two slices and views had cost ~10 µs a call.
_SPLITS = weight_pack.WeakIdTable()  # pack -> {"split": (panels, sums)}


def split_packed(w, k):
    """(packed panels, sums) of weight w's cached pack."""
    both = weight_pack.packed(w, "cpu_qconv2d", _pack)
    hit = _SPLITS.get(both)
    if hit is not None:
        return hit["split"]
    parts = _split(both, k)
    if not torch.compiler.is_compiling():
        _SPLITS.setdefault(both)["split"] = parts
    return parts


def _layout(y, x):
    return y if checks.output_memory_format(x) == torch.channels_last else y.contiguous()


def qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp, ms=None,
            mt=None, shuffle=1, o_dtype=None, r_scale=0.0, r_zp=0):
    """o_dtype (int8, bfloat16 or None) and a uint8 residual's (r_scale > 0, r_zp) go to the kernels' stores."""
    registry.cpu_ext()
    k, cg, r, s = w.shape
    a = checks.ACTIVATIONS.index(act)
    types = (o_dtype, r_scale, r_zp)
    if shuffle > 1 and groups == 1:
        tag = f"cpu_qconv2d_sub{shuffle}"
        packed, wsum = split_packed(weight_pack.sub_pixel(w, k, shuffle, tag), k)
        res_s = None if res is None else res[:, weight_pack.sub_pixel_order(k, shuffle)]
        ws_s, b_s = weight_pack.sub_pixel(ws, k, shuffle, tag), weight_pack.sub_pixel(b, k, shuffle, tag)
        y = torch.ops.sft_cpu.qconv2d.default(x, x_scale, x_zp, packed, wsum, ws_s, b_s, r, s, stride, padding,
                                              dilation, a, slope, res_s, o_scale, o_zp, ms, mt, shuffle, *types)
        return _layout(y, x)
    if shuffle > 1:
        y = qconv2d(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp, ms,
                    mt, 1, *types)
        return _layout(torch.nn.functional.pixel_shuffle(y, shuffle), x)
    if groups > 1 and cg == 1 and k == groups:
        y = torch.ops.sft_cpu.qconv2d_depthwise.default(x, x_scale, x_zp, w, ws, b, stride, padding, dilation, a,
                                                        slope, res, o_scale, o_zp, ms, mt, *types)
        return _layout(y, x)
    if groups > 1 and torch.ops.sft_cpu.qconv2d_grouped_fits(x.shape[1], k, groups):
        packed, wsum = grouped_packed(w, k)
        y = torch.ops.sft_cpu.qconv2d_grouped.default(x, x_scale, x_zp, packed, wsum, ws, b, r, s, stride, padding,
                                                      dilation, groups, a, slope, res, o_scale, o_zp, ms, mt, *types)
        return _layout(y, x)
    if groups > 1:
        return _grouped(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, a, slope, o_scale, o_zp,
                        ms, mt, types)
    packed, wsum = split_packed(w, k)
    y = torch.ops.sft_cpu.qconv2d.default(x, x_scale, x_zp, packed, wsum, ws, b, r, s, stride, padding, dilation, a,
                                          slope, res, o_scale, o_zp, ms, mt, 1, *types)
    return _layout(y, x)


def bound(w, ws, b, x_scale, x_zp, stride, padding, dilation, groups, act, slope, o_scale, o_zp, r_scale=0.0,
          r_zp=0):
    """fn(x, res): the kernel qconv2d above runs for a dense, depthwise or grouped conv (no modulation, shuffle or
    output dtype), everything but the input and residual bound; None for groupings run group by group. stride,
    padding and dilation are pairs; the caller checks once that this call's arguments are valid and that x is
    channels_last (so the result needs no copy back)."""
    k, cg, r, s = w.shape
    geometry = (list(stride), list(padding), list(dilation))
    head = (float(x_scale), int(x_zp))
    epi = (checks.ACTIVATIONS.index(act), float(slope))
    types = (None, float(r_scale), int(r_zp))
    if groups == 1:
        packed, wsum = split_packed(w, k)
        head, tail = (*head, packed, wsum, ws, b, r, s, *geometry, *epi), (float(o_scale), int(o_zp), None, None, 1)
        op = torch.ops.sft_cpu.qconv2d.default
    elif cg == 1 and k == groups:  # depthwise: its own kernel
        head, tail = (*head, w, ws, b, *geometry, *epi), (float(o_scale), int(o_zp), None, None)
        op = torch.ops.sft_cpu.qconv2d_depthwise.default
    elif torch.ops.sft_cpu.qconv2d_grouped_fits(cg * groups, k, groups):  # vectors over whole groups
        packed, wsum = grouped_packed(w, k)
        head = (*head, packed, wsum, ws, b, r, s, *geometry, groups, *epi)
        tail = (float(o_scale), int(o_zp), None, None)
        op = torch.ops.sft_cpu.qconv2d_grouped.default
    else:
        return None
    tail = (*tail, *types)
    return lambda x, res: op(x, *head, res, *tail)


def _pack_grouped(w_q):
    """[K, Cg, R, S] int8 → [R·S][Cg/4][K][4] (each output channel's 4-byte words of its group's inputs, per tap) and
    the int32 sums Σ w_q[k], as one uint8 tensor (qgrouped.cpp's layout)."""
    k, cg, r, s = w_q.shape
    packed = w_q.permute(2, 3, 1, 0).reshape(r * s, cg // 4, 4, k).permute(0, 1, 3, 2).contiguous()
    wsum = w_q.to(torch.int32).sum((1, 2, 3)).to(torch.int32)
    return torch.cat([packed.view(torch.uint8).reshape(-1), wsum.view(torch.uint8)])


def grouped_packed(w, k):
    """(packed weights, sums) of weight w's cached pack for the kernel over whole groups (qgrouped.cpp)."""
    both = weight_pack.packed(w, "cpu_qconv2d_grouped", _pack_grouped)
    return both[:-4 * k].view(torch.int8), both[-4 * k:].view(torch.int32)


def _grouped(x, w, ws, b, res, x_scale, x_zp, stride, padding, dilation, groups, a, slope, o_scale, o_zp, ms, mt,
             types):
    k, cg, r, s = w.shape
    kg = k // groups
    both = weight_pack.packed(w, f"cpu_qconv2d_g{groups}",
                              lambda w: torch.cat([_pack(w[g * kg:(g + 1) * kg].contiguous()) for g in range(groups)]))
    per = both.numel() // groups
    ys = []
    for g in range(groups):
        packed, wsum = _split(both[g * per:(g + 1) * per], kg)
        ci, ko = slice(g * cg, (g + 1) * cg), slice(g * kg, (g + 1) * kg)
        ys.append(torch.ops.sft_cpu.qconv2d.default(
            x[:, ci], x_scale, x_zp, packed, wsum, ws[ko], None if b is None else b[ko], r, s, stride, padding,
            dilation, a, slope, None if res is None else res[:, ko], o_scale, o_zp,
            None if ms is None else ms[:, ci], None if mt is None else mt[:, ci], 1, *types))
    return _layout(torch.cat(ys, 1).contiguous(memory_format=torch.channels_last), x)
