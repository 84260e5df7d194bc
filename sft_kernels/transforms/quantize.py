"""quantize_: post-training int8 quantization of a CNN's convs (torchao style: a config and an in-place verb).

    report = sft_kernels.quantize_(model, sft_kernels.Int8Config(psnr_budget_db=0.1), calibration=lr_images,
                                   targets=hr_images)

0. Batch norms (eval statistics) right after eligible convs are folded into them, so the per-channel int8 weights
   carry their scale (fold.py: in place, the model keeps its forward; the batch norm becomes nn.Identity).
1. Calibration: every eligible conv gets an observer on its input (Int8Config.observer: minmax, percentile, mse);
   the calibration inputs run through the float model once.
2. Every eligible conv becomes a QuantConv2d: per-output-channel symmetric int8 weights, per-tensor affine uint8
   activations (quantized inside the kernel as it copies its float input, so whatever the model does between its
   convs, such as SFT modulation and residual adds, stays float). With ``Int8Config(winograd=True)`` the 3×3
   stride-1 convs of 16+ channels in and out run in the Winograd domain (sft.qconv2d_winograd, F(2×2, 3×3): 2.25× fewer
   int8 multiplies), each with its 16 input multipliers set from the largest transformed calibration input.
3. With ``psnr_budget_db`` (needs ``targets``: what the model's outputs should be, e.g. HR images for an SR model),
   the model is scored on the calibration set; while its PSNR is more than the budget below the float model's, a
   sensitivity scan ranks the layers (for each, the PSNR gained by returning it alone to float) and the most
   sensitive go back, one at a time, to float (``fallback="float"``) or to int8 weights with float activations
   (``fallback="w8a16"``) until the model meets the budget; Winograd convs first go back to the direct int8 conv,
   most sensitive first, by the same scan. SR networks need this (no batch norm, long-tailed
   activations: PAMS, DAQ, PTQ4SR); classifiers rarely do.
Last, a ReLU / LeakyReLU / ReLU6 module right after an int8 conv becomes the conv's epilogue (and nn.Identity), an
int8 conv whose output only int8 convs read hands them uint8 maps (requantized in its store), and the convs that
stay float are converted as `convert_` does, so they run on our kernels too (an FSRCNN quantized alone had kept its
9×9 transposed conv on PyTorch's: 0.59× the converted float model).

Eligible: nn.Conv2d (and sft_kernels.nn.Conv2d), any padding, grouped and depthwise ones included (the
cpu backend runs depthwise convs on their own int8 kernel and other groupings one group at a time), transposed convs
with equal strides (QuantConvTranspose2d: their sub-pixel conv in int8, the PixelShuffle in its store), and nn.Linear
layers that the calibration ran through their forward (a classifier's head: QuantLinear, sft.qconv2d's 1×1 conv over
one-pixel rows; ``Int8Config(linear=False)`` keeps them float; a Linear whose weight its owner reads directly, as
nn.MultiheadAttention's out_proj, is never called and stays float). The report has a row per conv and Linear: its
input scale and zero point, weight scale range, and what it became; report.stats holds the PSNR / SQNR before and
after.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import nn

from ..nn.quant_conv_transpose import QuantConvTranspose2d, transpose_fits
from ..nn.quantized import QuantConv2d, QuantLinear, winograd_geometry
from ..runtime.outputs import leaves
from . import caller_layout, fold
from .convert import convert_
from .separable import unfuse_separable_
from .fold import unfold_live_
from .observers import OBSERVERS, Observer
from .report import Report
from .swap import notify, swap_modules, unfused


@dataclasses.dataclass
class Int8Config:
    """How quantize_ quantizes (see the module docstring)."""

    observer: str = "mse"  # activation ranges: "minmax", "percentile" or "mse"
    percentile: float = 99.99  # for observer="percentile"
    psnr_budget_db: Optional[float] = None  # max PSNR loss vs the float model on the calibration set (needs targets)
    fallback: str = "float"  # what sensitive layers become under the budget: "float" or "w8a16"
    keep_float: Sequence[str] = ()  # qualified names of convs to leave float
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None  # False: leave that conv float
    backend: Optional[str] = None  # the QuantConv2d backend (None: fastest available)
    data_range: float = 1.0  # for PSNR: the targets' range (1.0: images in [0, 1])
    linear: bool = True  # nn.Linear layers too (QuantLinear)
    # 3×3 stride-1 convs (16+ channels in and out) in the Winograd domain (sft.qconv2d_winograd: 2.25× fewer int8
    # multiplies, at a PSNR cost the budget weighs: the most sensitive go back to the direct int8 conv first).
    # True: each such conv where it measures faster than the direct int8 conv on its calibration input's shape on
    # this machine (small maps with many channels, or AMX CPUs, keep the direct conv; calibrate on crops the size
    # of what the model will run on); "always": every such conv
    winograd: Union[bool, str] = False

    def __post_init__(self):
        if self.observer not in OBSERVERS:
            raise ValueError(f"Int8Config.observer must be one of {OBSERVERS}, got {self.observer!r}")
        if self.fallback not in ("float", "w8a16"):
            raise ValueError(f"Int8Config.fallback must be 'float' or 'w8a16', got {self.fallback!r}")
        if self.winograd not in (False, True, "always"):
            raise ValueError(f"Int8Config.winograd must be False, True (where measured faster) or 'always', got "
                             f"{self.winograd!r}")
        if self.psnr_budget_db is not None and not self.psnr_budget_db >= 0:
            raise ValueError(f"Int8Config.psnr_budget_db must be >= 0 dB, got {self.psnr_budget_db}")


def eligible(name: str, conv: nn.Module, config: Int8Config) -> Optional[str]:
    """None if `conv` (an nn.Conv2d or nn.Linear) can be quantized, else why it stays float."""
    if name in config.keep_float or (config.filter_fn is not None and not config.filter_fn(conv, name)):
        return "kept float by the config"
    if isinstance(conv, nn.Linear):
        return None if config.linear else "Int8Config(linear=False)"
    return None


class _Switch(nn.Module):
    """During quantize_: a conv (or Linear) that runs quantized or float (the sensitivity scan flips `mode`)."""

    def __init__(self, conv: nn.Module, q: nn.Module, w8a16: Optional[nn.Module]):
        super().__init__()
        self.conv, self.q, self.w8a16, self.mode = conv, q, w8a16, "int8"
        self.channels_last_output = isinstance(q, (QuantConv2d, QuantConvTranspose2d))  # as theirs (caller_layout)

    def forward(self, x, *args, **kwargs):
        m = {"int8": self.q, "w8a16": self.w8a16, "float": self.conv}[self.mode]
        return m(x, *args, **kwargs)


def _inputs(calibration) -> list:
    # one tensor is one batch (iterating it would hand the model its images one by one, without the batch dim)
    batches = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    if not batches:
        raise ValueError("quantize_ needs calibration inputs: an iterable of model inputs (tensors or tuples)")
    return [b if isinstance(b, (tuple, list)) else (b,) for b in batches]


def _run(model, batches) -> list:
    """The model's output for each batch, as one tensor: a dict, list or tuple of outputs (a segmentation model's
    {"out": ..., "aux": ...}) becomes its floating tensors flattened and concatenated, which the SQNR reads alike."""
    with torch.no_grad():
        return [_as_tensor(model(*b)) for b in batches]


def _as_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    parts = [t.detach().float().flatten() for t in leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not parts:
        raise TypeError(f"quantize_ scores the model by its floating outputs; {type(out).__name__} holds none")
    return torch.cat(parts)


def _psnr(outs, targets, data_range) -> float:
    """Mean PSNR over the batches (outputs clamped to the data range)."""
    vals = []
    for y, t in zip(outs, targets):
        y = y.float().clamp(0, data_range)
        t = t.float().to(y.device)
        if y.shape != t.shape:
            raise ValueError(f"targets must be shaped like the model's outputs: {tuple(t.shape)} vs {tuple(y.shape)}")
        mse = float(((y - t) ** 2).mean())
        vals.append(10 * math.log10(data_range ** 2 / max(mse, 1e-20)))
    return sum(vals) / len(vals)


def _sqnr(outs, refs) -> float:
    """Signal-to-quantization-noise ratio of the outputs against the float model's, in dB."""
    sig = sum(float((r.float() ** 2).sum()) for r in refs)
    err = sum(float(((o.float() - r.float()) ** 2).sum()) for o, r in zip(outs, refs))
    return 10 * math.log10(max(sig, 1e-20) / max(err, 1e-20))


def _progress(it, desc, total, show):
    if not show:
        return it
    from tqdm import tqdm
    return tqdm(it, desc=desc, total=total, unit="layer", dynamic_ncols=True, leave=False)


WINOGRAD_MIN_GAIN = 1.0  # Int8Config(winograd=True): how much faster than direct the Winograd form must measure


class _WinogradSamples:
    """What calibration keeps of a Winograd-eligible conv's inputs, quantized with its observer's (scale, zero
    point): the first shape, and per Winograd position the largest transformed value (ops.qconv2d_winograd.
    tile_range): 16 numbers, no map."""

    def __init__(self, qparams: tuple):
        from ..ops.qconv2d_winograd import POSITIONS

        self.top, self.shape, self.qparams = torch.zeros(POSITIONS, dtype=torch.float64), None, qparams

    def __call__(self, module, args):
        from ..ops.qconv2d_winograd import tile_range

        x = args[0]
        self.shape = self.shape or tuple(x.shape)
        self.top = torch.maximum(self.top, tile_range(x, *self.qparams))


def _winograd_ranges(model: nn.Module, batches: list, observers: dict) -> dict:
    """{name: _WinogradSamples} of every calibrated conv the Winograd form fits: the calibration inputs once more,
    now that each conv's input scale and zero point are known."""
    samples, hooks = {}, []
    for name, m in model.named_modules():
        if name in observers and isinstance(m, nn.Conv2d) and winograd_geometry(m):
            samples[name] = _WinogradSamples(observers[name].qparams())
            hooks.append(m.register_forward_pre_hook(samples[name]))
    try:
        with unfused(model):
            _run(model, batches)
    finally:
        for h in hooks:
            h.remove()
    return samples


def calibrate(model: nn.Module, batches: list, config: Int8Config) -> tuple:
    """Run `batches` through `model` (its module-by-module forward) with an observer on the input of every eligible
    conv and Linear. Returns ({name: Observer}, {name: why it stays float}, the model's outputs)."""
    observers, skipped, hooks = {}, {}, []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            continue
        why = eligible(name, m, config) or (transpose_fits(m) if isinstance(m, nn.ConvTranspose2d) else None)
        if why:
            skipped[name] = why
            continue
        obs = observers[name] = Observer(config.observer, config.percentile)
        hooks.append(m.register_forward_pre_hook(lambda mod, args, o=obs: o.observe(args[0])))
    try:
        with unfused(model):  # a fused forward reads the convs' weights directly: the hooks must see each conv run
            outputs = _run(model, batches)
    finally:
        for h in hooks:
            h.remove()
    return observers, skipped, outputs


def _set_winograd(q: QuantConv2d, samples: _WinogradSamples, measure: bool) -> str:
    """q in the Winograd form, its multipliers keeping the largest transformed calibration input within int8; with
    `measure`, only if it runs faster than the direct conv (by WINOGRAD_MIN_GAIN×) on the calibration input's shape.
    Returns what was decided, for the report ("" if q is not eligible)."""
    from ..ops.qconv2d_winograd import mult_for_range

    if samples.shape is None or q.weight_int8.device.type != "cpu":
        return ""
    q.set_winograd(mult_for_range(samples.top))
    if not measure:
        return "Winograd F(2x2, 3x3)"
    t_w, t_d = _winograd_times(q, samples.shape)
    if t_d < WINOGRAD_MIN_GAIN * t_w:
        q.set_winograd(None)
        return f"direct: the Winograd form measured {t_w * 1e3:.3f} ms against {t_d * 1e3:.3f} ms here"
    return f"Winograd F(2x2, 3x3): {t_w * 1e3:.3f} ms against {t_d * 1e3:.3f} ms direct here"


def _winograd_times(q: QuantConv2d, shape: tuple) -> tuple:
    """(Winograd, direct) seconds of q on a uint8 channels_last input of `shape`, uint8 out, interleaved medians."""
    from .. import ops
    from ..tools.benchmark import time_interleaved

    x = torch.randint(0, 256, shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    u_q, u_scale = q._winograd_weight()
    kw = dict(input_scale=q.input_scale, input_zero_point=q.input_zero_point, out_scale=1.0, out_zero_point=0,
              backend=q.backend)
    fns = {"winograd": lambda: ops.qconv2d_winograd(x, u_q, u_scale, q.winograd_mult, q.bias, **kw),
           "direct": lambda: ops.qconv2d(x, q.weight_int8, q.weight_scale, q.bias, q.stride, q.padding, **kw)}
    with torch.no_grad():
        t = time_interleaved(fns, repeat=7, warmup=1)
    return t["winograd"], t["direct"]


def _greedy(model, batches, targets, config, current, floor, options, progress, desc) -> tuple:
    """Fallbacks taken one at a time, most PSNR gained first, until the model meets the floor. options: {name:
    (take, undo)}. Returns (PSNR, names taken, {name: PSNR gained by taking it alone})."""
    gains, taken = {}, []
    for name in _progress(list(options), f"sensitivity scan ({desc})", len(options), progress):
        options[name][0]()
        gains[name] = _psnr(_run(model, batches), targets, config.data_range) - current
        options[name][1]()
    for name in _progress(sorted(gains, key=gains.get, reverse=True), "meeting the budget", len(gains), progress):
        if current >= floor:
            break
        options[name][0]()
        taken.append(name)
        current = _psnr(_run(model, batches), targets, config.data_range)
    return current, taken, gains


def _meet_budget(model, config, batches, refs, targets, switches, progress) -> tuple:
    stats = {}
    outs = _run(model, batches)
    stats["sqnr_db"] = _sqnr(outs, refs)
    if targets is not None:
        stats["psnr_float"] = _psnr(refs, targets, config.data_range)
        stats["psnr_int8_all"] = _psnr(outs, targets, config.data_range)
    fallen = []
    if config.psnr_budget_db is None:
        return stats, fallen
    floor = stats["psnr_float"] - config.psnr_budget_db
    current = stats["psnr_int8_all"]
    # first the Winograd convs most sensitive to it back to the direct int8 conv, then layers back to float
    wino = {n: sw.q for n, sw in switches.items() if isinstance(sw.q, QuantConv2d) and sw.q.winograd_mult is not None}
    if current < floor and wino:
        mults = {n: q.winograd_mult for n, q in wino.items()}
        options = {n: (lambda q=q: q.set_winograd(None), lambda q=q, n=n: q.set_winograd(mults[n]))
                   for n, q in wino.items()}
        current, direct, gains = _greedy(model, batches, targets, config, current, floor, options, progress,
                                         "Winograd")
        stats["winograd_sensitivity_db"], stats["winograd_direct"] = gains, direct
    if current < floor:
        options = {n: (lambda sw=sw: setattr(sw, "mode", config.fallback), lambda sw=sw: setattr(sw, "mode", "int8"))
                   for n, sw in switches.items()}
        current, fallen, gains = _greedy(model, batches, targets, config, current, floor, options, progress, "float")
        stats["sensitivity_db"] = gains
    stats["psnr_int8"] = current
    stats["sqnr_db"] = _sqnr(_run(model, batches), refs)
    return stats, fallen


def quantize_(model: nn.Module, config: Optional[Int8Config] = None, calibration: Iterable = (),
              targets: Optional[Iterable[torch.Tensor]] = None, progress: bool = True) -> Report:
    """Quantize `model`'s eligible convs to int8 in place (see the module docstring). `calibration`: model inputs
    (tensors, or tuples of positional arguments; one tensor alone is one batch); `targets`: the outputs wanted for
    them (needed with a PSNR budget; a tensor alone for a tensor alone). Returns the per-layer report;
    report.stats: psnr_float / psnr_int8 (with targets), sqnr_db, kept. Residual adds in the model's own forward
    stay float; quantize a `fuse_for_inference` copy to have its convs take them (int8 maps between blocks)."""
    config = config or Int8Config()
    batches = _inputs(calibration)
    targets = None if targets is None else [targets] if isinstance(targets, torch.Tensor) else list(targets)
    if config.psnr_budget_db is not None and targets is None:
        raise ValueError("Int8Config(psnr_budget_db=...) scores the model against targets: pass targets= (the "
                         "outputs wanted for the calibration inputs, e.g. the HR images of an SR model)")
    if targets is not None and len(targets) != len(batches):
        raise ValueError(f"targets must pair with the calibration inputs: {len(targets)} vs {len(batches)}")
    report = Report("quantize_")
    was_training = model.training
    model.eval()

    # 0. convert_'s fused depthwise + 1×1 pairs split again (each conv is quantized on its own); batch norms after
    # eligible convs folded into them, so the int8 weights carry their scale (fold.py)
    for name in unfold_live_(model):
        report.add(name, "note", "batch norm / activation fold undone: quantize_ folds them into the int8 weights")
    for name in unfuse_separable_(model):
        report.add(name, "note", "fused separable pair split: its convs are quantized one by one")
    chains = fold.plan(model)
    convs = dict(model.named_modules())
    for conv, bn in fold.fold_batch_norms_(model, chains, lambda n: eligible(n, convs[n], config) is None):
        report.add(bn, "folded", f"batch norm folded into {conv}")

    # 1. calibrate: an observer on the input of every eligible conv
    observers, skipped, refs = calibrate(model, batches, config)
    wino = _winograd_ranges(model, batches, observers) if config.winograd else {}

    # 2. swap in switchable quantized convs (Winograd-eligible ones: which form, by measurement with winograd=True)
    switches, winograd_notes = {}, {}

    def rule(name, child):
        if name in skipped:
            return skipped[name]
        if name not in observers:
            return None
        if not observers[name].seen:  # unused, or a Linear whose owner reads the weight itself
            return "never called by the calibration forward: kept float"
        scale, zp = observers[name].qparams()
        cls = QuantLinear if isinstance(child, nn.Linear) else \
            QuantConvTranspose2d if isinstance(child, nn.ConvTranspose2d) else QuantConv2d
        q = cls.from_float(child, scale, zp, backend=config.backend)
        if name in wino:
            decided = _set_winograd(q, wino.pop(name), config.winograd is True)
            if decided:
                winograd_notes[name] = decided
        w8a16 = cls.from_float(child, scale, zp, 16, config.backend) if config.fallback == "w8a16" else None
        sw = switches[name] = _Switch(child, q, w8a16)
        return sw

    swap_modules(model, rule, report, action="quantized")
    caller_layout.install(model)  # the switches' output, for the runs below

    # 3. the budget: sensitive layers back to float (or W8A16) until the model meets it (the model's own forward
    # while the switches are in; a fused forward, if it has one, comes back after they settle)
    with unfused(model):
        stats, fallen = _meet_budget(model, config, batches, refs, targets, switches, progress)

    # 4. settle: each switch becomes what it ended as
    def settle(name, child):
        if not isinstance(child, _Switch):
            return None
        return {"int8": child.q, "w8a16": child.w8a16, "float": child.conv}[child.mode]

    swap_modules(model, settle, Report("settle"))
    # 5. an activation module after an int8 conv or Linear (ReLU-likes, SiLU, GELU...) becomes its epilogue (fold.py)
    for conv, act in fold.fold_activations_(model, chains, lambda c: isinstance(c, (QuantConv2d, QuantLinear))):
        report.add(act, "folded", f"activation fused into {conv}")
    # 6. an int8 conv whose output only another int8 conv reads hands it uint8 (fold.chain_int8_)
    for prod, cons in fold.chain_int8_(model):
        report.add(prod, "chained", f"uint8 output for {cons}")
    adds = fold.float_residual_adds(model)
    if adds:
        report.add(adds[0], "note", f"{len(adds)} int8 conv output(s) meet an add in this model's forward, in float: "
                   "quantize_ a fuse_for_inference(model, example_input) copy instead, whose convs take the residual "
                   "adds, and the maps between blocks stay uint8")
    # 7. the convs that stay float (and transposed convs) run on our kernels too, as after convert_
    for name in convert_(model, fuse=False).converted:
        report.add(name, "converted", "float conv on sft_kernels' kernels (convert_)")
    for row in report.rows:
        sw = switches.get(row.name)
        if sw is None or row.action != "quantized":
            continue
        q = sw.q
        row.stats.update(input_scale=q.input_scale, input_zero_point=q.input_zero_point,
                         weight_scale_min=float(q.weight_scale.min()), weight_scale_max=float(q.weight_scale.max()),
                         mode=sw.mode, sensitivity_db=stats.get("sensitivity_db", {}).get(row.name))
        wino = sw.mode == "int8" and isinstance(q, QuantConv2d) and q.winograd_mult is not None
        row.stats["winograd"] = wino
        if sw.mode == "int8":
            row.detail = f"input scale {q.input_scale:.4g}, zero point {q.input_zero_point}"
            if row.name in winograd_notes:
                row.detail += "; " + winograd_notes[row.name]
            if row.name in stats.get("winograd_direct", ()):
                row.detail += (f" (direct, not Winograd: +{stats['winograd_sensitivity_db'][row.name]:.3f} dB, "
                               "within the budget)")
        else:
            row.action = "kept float" if sw.mode == "float" else "w8a16"
            row.detail = (f"sensitive: +{row.stats['sensitivity_db']:.3f} dB back in float, within the "
                          f"{config.psnr_budget_db} dB budget")
    stats["kept"] = fallen
    stats["cpu_kernel"] = _cpu_kernel()
    if stats["cpu_kernel"] in ("avx2", "generic"):
        warnings.warn(f"this CPU runs the int8 conv on its {stats['cpu_kernel']} kernel (no AVX-512 VNNI / AMX), which "
                      "is slower than the float convs here: the int8 model saves memory, not time", stacklevel=2)
    report.stats = stats
    for name, what in notify(model, "quantize_", True):
        report.add(name, "note", what)
    model.train(was_training)
    return report


def _cpu_kernel() -> Optional[str]:
    try:
        from ..ops.qconv2d import cpu
        return cpu.kernel()
    except Exception:  # the extension is not built: the reference runs
        return None


def quantized_layers(model: nn.Module) -> list:
    """Names of the QuantConv2d and QuantLinear modules of `model` (int8 and W8A16)."""
    return [n for n, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))]
