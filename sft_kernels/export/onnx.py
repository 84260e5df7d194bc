"""export_onnx(model, example, path): any model this package made, as standard ONNX that onnxruntime runs.

The export works on a copy: fused forwards off (SFTNet's), converted convs back to nn.Conv2d (`revert_`: fused
separable pairs; convs with a fused activation or residual become EagerConv2d), int8 convs and Linears (QuantConv2d,
QuantLinear; QuantConvTranspose2d: a ConvTranspose of its dequantized weight) as QDQ patterns (ops/qconv2d/onnx.py),
string padding as numbers (onnxruntime refuses the auto_pad SAME that torch.onnx writes for a dilated conv); our
other modules (SeparableConv2d, SparseConv2d, the halves of factorized convs) trace as standard ops (their forwards
check torch.jit.is_tracing()). Then torch.onnx's TorchScript
exporter (PixelShuffle → DepthToSpace). A model in train mode is exported as in eval mode, a float64 one in float32.
Batch, height and width of 4-D inputs are dynamic (``dynamic_size=None``: height and width fixed to the example's,
with a warning, where the exporter cannot keep them dynamic, such as a VGG's adaptive pooling to 7×7; False: fixed;
True: dynamic or an error). With ``check=True`` onnxruntime runs the file on `example` and
the result must match the model's within `atol` (float: 1e-4; int8: the QDQ graph rounds its inputs as ONNX's
QuantizeLinear does, x / scale, where our kernels multiply by 1 / scale, so an input may land one step away: 2e-2 by
default, or, where a deep model compounds those steps past it, at least 35 dB of SQNR against the int8 model).
Models returning dicts, lists or tuples of tensors are checked output by output.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO, Optional, Union

import torch
from torch import nn

from ..nn import EagerConv2d
from ..nn.quant_conv_transpose import QDQConvTranspose2d, QuantConvTranspose2d
from ..nn.quantized import QuantConv2d, QuantLinear
from ..ops.qconv2d.onnx import QDQConv2d, QDQLinear
from ..runtime.outputs import leaves
from ..testing import tol
from ..transforms.convert import revert_
from ..transforms.report import Report
from ..transforms.swap import swap_modules, unfused


def _exportable(model: nn.Module) -> tuple:
    m = copy.deepcopy(model).eval()
    revert_(m)
    quantized = []

    def rule(name, child):
        if isinstance(child, (QuantConv2d, QuantLinear, QuantConvTranspose2d)):
            quantized.append(name)
            return QDQConv2d(child) if isinstance(child, QuantConv2d) else QDQLinear(child) \
                if isinstance(child, QuantLinear) else QDQConvTranspose2d(child)
        if type(child) is nn.Conv2d and isinstance(child.padding, str):  # explicit pads: see nn.conv._eager_forward
            return EagerConv2d.from_conv(child)
        return None

    swap_modules(m, rule, Report("export_onnx"))
    return m, quantized


def export_onnx(model: nn.Module, example: Union[torch.Tensor, tuple], path: Union[str, Path, BinaryIO],
                opset: int = 17, check: bool = True, atol: Optional[float] = None,
                dynamic_size: Optional[bool] = None) -> Union[Path, BinaryIO]:
    """Write `model` as ONNX to `path` (see the module docstring); returns the path. `path` may also be a binary
    file object (io.BytesIO, an open file), as torch.onnx.export takes: the model's bytes are written to it (built
    and checked in a temporary file first) and it is returned."""
    if hasattr(path, "write"):
        with tempfile.TemporaryDirectory() as tmp:
            out = export_onnx(model, example, Path(tmp) / "model.onnx", opset, check, atol, dynamic_size)
            path.write(out.read_bytes())
        return path
    args = example if isinstance(example, tuple) else (example,)
    m, quantized = _exportable(model)
    if any(t.dtype == torch.float64 for t in (*m.parameters(), *m.buffers())):
        # onnxruntime's CPU Conv has no float64 kernel: the file holds the float32 model
        m = m.float()
        export_args = tuple(a.float() if isinstance(a, torch.Tensor) and a.dtype == torch.float64 else a
                            for a in args)
    else:
        export_args = args
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"input{i}" if i else "input" for i in range(len(args))]

    def export(spatial: bool):
        sizes = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
        dyn = {n: sizes for n, a in zip(names, args) if a.dim() == 4}
        dyn["output"] = {0: "batch", 2: "out_height", 3: "out_width"} if spatial else {0: "batch"}
        with torch.no_grad(), unfused(m), _mha_fastpath_off():  # the module-by-module forward: standard ops only
            torch.onnx.export(m, export_args, str(path), input_names=names, output_names=["output"],
                              dynamic_axes=dyn, opset_version=opset, dynamo=False)

    try:
        if dynamic_size is None:  # a try: where it fails, the exporter's dump of the whole graph is not for the user
            with _stdout_to_devnull():
                export(True)
        else:
            export(dynamic_size)
    except Exception as e:  # noqa: BLE001 - torch.onnx raises several types for sizes it cannot keep symbolic
        if dynamic_size is not None or "size" not in str(e):
            raise
        warnings.warn(f"export_onnx: height and width fixed to the example's ({e.__class__.__name__}: "
                      f"{str(e).splitlines()[0][:120]}); pass dynamic_size=False to ask for this", stacklevel=2)
        export(False)
    if quantized:
        _fold_weight_quantization(path)
    if check:
        budget = tol("onnx_int8" if quantized else "onnx_fp32")["atol"]
        sqnr = tol("onnx_int8_sqnr_db")["atol"] if quantized and atol is None else None
        # the file holds the eval-mode model: a model in train mode is compared as a copy in eval mode (its own
        # batch statistics and dropout would differ, and running it would move its running statistics)
        check_onnx(copy.deepcopy(model).eval() if model.training else model, args, path,
                   atol if atol is not None else budget, sqnr)
    return path


@contextlib.contextmanager
def _mha_fastpath_off():
    """nn.MultiheadAttention's inference fast path (eval mode, no grad) is one fused op that ONNX has no export for
    (a ViT's encoder failed with "aten::_native_multi_head_attention ... not supported"); its standard path exports."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


@contextlib.contextmanager
def _stdout_to_devnull():
    """File descriptor 1 to /dev/null: torch.onnx's TorchScript exporter prints the whole IR graph from C++ on any
    export error (its ONNX log is always on: `if _C._jit_is_onnx_log_enabled` tests the function, not its result)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _fold_weight_quantization(path: Path) -> int:
    """QuantizeLinear of a float weight initializer → the int8 initializer it computes (the exporter leaves the
    float weight and its QuantizeLinear in the graph): the file then holds int8 weights behind DequantizeLinear,
    a quarter of the bytes. Returns how many were folded."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    g = proto.graph
    const = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # Constant nodes and Identity of constants: values too
        if n.op_type == "Constant":
            const[n.output[0]] = numpy_helper.to_array(next(a.t for a in n.attribute if a.name == "value"))
        elif n.op_type == "Identity" and n.input[0] in const:
            const[n.output[0]] = const[n.input[0]]
    folded, keep = 0, []
    for n in g.node:
        if n.op_type != "QuantizeLinear" or len(n.input) < 3 or not all(i in const for i in n.input[:3]):
            keep.append(n)
            continue
        w, scale, zp = const[n.input[0]].astype(np.float32), const[n.input[1]].astype(np.float32), const[n.input[2]]
        if w.ndim < 2:  # an activation's constant, not a weight
            keep.append(n)
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim:
            shape[axis] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape), info.min, info.max).astype(zp.dtype)
        g.initializer.append(numpy_helper.from_array(q, n.output[0]))
        folded += 1
    del g.node[:]
    g.node.extend(keep)
    # drop what nothing reads any more (the float weights, their Identity / Constant nodes)
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("Identity", "Constant") and not any(o in used for o in n.output)]
        for n in dead:
            g.node.remove(n)
        if not dead:
            break
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return folded


def check_onnx(model: nn.Module, args: tuple, path: Union[str, Path], atol: float,
               min_sqnr_db: Optional[float] = None) -> float:
    """Run `path` in onnxruntime on `args`; raise if it differs from `model` by more than atol (times the outputs'
    largest magnitude where that is above 1: float32 rounding scales with it; a random-init Inception-v3's logits
    reach 1e12) or, given `min_sqnr_db`, where its signal-to-noise ratio against the model's outputs is below that.
    Returns the max difference. A model returning a dict, list or tuple of tensors (a segmentation model's {"out",
    "aux"}) is compared output by output, in the order torch.onnx flattens them (runtime/outputs.py)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("checking an ONNX export needs onnxruntime: pip install onnxruntime (or check=False)") from e
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.detach().float().contiguous().numpy() for i, a in zip(sess.get_inputs(), args)}
    gots = [torch.from_numpy(g) for g in sess.run(None, feeds)]
    with torch.no_grad():
        wants = _tensors(model(*args))
    if len(gots) != len(wants):
        raise RuntimeError(f"the ONNX file has {len(gots)} outputs, the model returns {len(wants)} tensors")
    diff, signal, noise, top = 0.0, 0.0, 0.0, 1.0
    for i, (got, want) in enumerate(zip(gots, wants)):
        want = want.float().contiguous()
        if got.shape != want.shape:
            raise RuntimeError(f"ONNX output {i}: shape {tuple(got.shape)} != the model's {tuple(want.shape)}")
        err = got.float() - want
        if want.numel():
            diff, top = max(diff, float(err.abs().max())), max(top, float(want.abs().max()))
        signal, noise = signal + float(want.double().pow(2).sum()), noise + float(err.double().pow(2).sum())
    sqnr = 10 * math.log10(max(signal, 1e-30) / noise) if noise > 0 else math.inf
    if not (diff <= atol * top or (min_sqnr_db is not None and sqnr >= min_sqnr_db)):
        also = f" and its SQNR against the model is {sqnr:.1f} dB (< {min_sqnr_db:g})" if min_sqnr_db else ""
        raise RuntimeError(f"onnxruntime's output differs from the model's by {diff:.3g} (> {atol * top:.3g})"
                           f"{also}: {path}")
    return diff


def _tensors(out) -> list:
    """A model's output as a list of tensors, in torch.onnx's output order."""
    found = leaves(out)
    for t in found:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"check_onnx compares tensor outputs (or dicts, lists and tuples of them); this model "
                            f"returns {type(t).__name__} (export with check=False and compare its outputs yourself)")
    return found
