"""fuse_for_inference: a converted copy of any traceable CNN with its conv → batch norm → ReLU chains and
residual adds folded into the convs (torch.fx).

`convert_` swaps convs in place and keeps every other module, so a generic network still runs each batch norm,
ReLU and residual add as a separate pass over its activations. For inference those fold away:

- a batch norm in eval mode right after a conv (whose output nothing else reads) is folded into the conv's
  weight and bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`);
- a ReLU / LeakyReLU / ReLU6 (module, function or method) right after a conv becomes the conv's epilogue activation;
- ``conv(x) * s`` with a number s (EDSR's and RCAN's residual scaling, ESRGAN's ``0.2 * rdb(x) + x``) scales the
  conv's weight and bias by s;
- ``conv(x) + y`` of the same shape becomes the conv's epilogue residual (``act(conv + b) + residual``, so only
  for a conv with no activation of its own: ResNet's ``relu(bn3(conv3(x)) + identity)`` keeps its final ReLU);
  needs an example input, to learn the shapes.

The model is deep-copied first; the result is a `torch.fx.GraphModule` (its state_dict differs: batch norms are
gone). Control flow that depends on tensor values cannot be traced; such models raise torch.fx's error.
"""
from __future__ import annotations

import copy
import operator
from typing import Optional

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .fold import unfold_live_
from ..nn import Conv2d, InvertedResidual, SeparableConv2d, SparseConv2d
from ..nn.conv import activation_of
from . import caller_layout
from .convert import ConversionReport, convert_
from .fold import single_calls
from .tracing import ConvTracer
from .swap import set_module

_RELU_FUNCS = {torch.relu, F.relu, torch.relu_, F.relu_}
_ADD_FUNCS = {operator.add, torch.add, operator.iadd}
_SILU_LIKE = {F.silu: "silu", F.hardswish: "hardswish"}
# Convs whose weight and bias a batch norm or a scale folds into (a pruned conv's zeros stay zero: the fold scales
# whole output channels).
_FOLDS_INTO = (nn.Conv2d, Conv2d, SparseConv2d)


def _activation(node: fx.Node, modules: dict) -> Optional[tuple]:
    """(name, slope) if `node` applies ReLU, LeakyReLU, ReLU6, SiLU, hardswish or GELU to its first argument and
    nothing else, else None."""
    if node.op == "call_module":
        act = activation_of(modules.get(node.target))
        if act:
            return act
    if node.op == "call_function" and node.target in _RELU_FUNCS and len(node.args) == 1 and \
            set(node.kwargs) <= {"inplace"}:
        return "relu", 0.01
    if node.op == "call_function" and node.target is F.leaky_relu and set(node.kwargs) <= {"negative_slope", "inplace"}:
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
        return ("leaky_relu", slope) if isinstance(slope, (int, float)) else None
    if node.op == "call_method" and node.target in ("relu", "relu_") and len(node.args) == 1:
        return "relu", 0.01
    if node.op == "call_function" and node.target is F.relu6 and len(node.args) == 1 and \
            set(node.kwargs) <= {"inplace"}:
        return "relu6", 0.01
    if node.op == "call_function" and node.target in _SILU_LIKE and len(node.args) == 1 and \
            set(node.kwargs) <= {"inplace"}:
        return _SILU_LIKE[node.target], 0.01
    if node.op == "call_function" and node.target is F.gelu and len(node.args) == 1 and \
            set(node.kwargs) <= {"approximate"} and node.kwargs.get("approximate", "none") in ("none", "tanh"):
        return ("gelu_tanh" if node.kwargs.get("approximate") == "tanh" else "gelu"), 0.01
    return None


def _sole_conv_input(node: fx.Node, modules: dict) -> Optional[fx.Node]:
    """node's first argument if it is a call of one of our convs whose result only `node` reads."""
    src = node.args[0] if node.args else None
    if isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules.get(src.target), Conv2d) \
            and len(src.users) == 1:
        return src
    return None


def _separable_pair(node: fx.Node, modules: dict, once) -> Optional[tuple]:
    """(depthwise node, depthwise conv, 1×1 conv) if `node` calls a plain 1×1 conv (stride 1, ungrouped) on the sole
    output of a plain depthwise conv, each called once; else None."""
    pw = modules.get(node.target) if node.op == "call_module" else None
    if type(pw) is not Conv2d or pw.kernel_size != (1, 1) or pw.stride != (1, 1) or pw.padding != (0, 0) \
            or pw.groups != 1 or len(node.args) != 1 or node.kwargs or not once(node):
        return None
    src = node.args[0]
    dw = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
    if type(dw) is not Conv2d or not (dw.groups == dw.in_channels > 1 and dw.out_channels % dw.in_channels == 0) \
            or isinstance(dw.padding, str) or dw.padding_mode != "zeros" or len(src.users) != 1 \
            or len(src.args) != 1 or src.kwargs or not once(src):
        return None
    return src, dw, pw


_MUL_FUNCS = {operator.mul, torch.mul, operator.imul}


def _times_number(node: fx.Node) -> tuple:
    """(x node, s) if `node` computes x * s or s * x with a Python number s (function, operator or Tensor.mul /
    mul_), else (None, None)."""
    is_mul = (node.op == "call_function" and node.target in _MUL_FUNCS) or \
             (node.op == "call_method" and node.target in ("mul", "mul_"))
    if not is_mul or len(node.args) != 2 or node.kwargs:
        return None, None
    a, b = node.args
    for x, s in ((a, b), (b, a)):
        if isinstance(x, fx.Node) and isinstance(s, (int, float)) and not isinstance(s, bool):
            return x, float(s)
    return None, None


def _plain_call(node: fx.Node, conv: nn.Module) -> bool:
    """conv(x) and nothing more: no residual argument and no epilogue of its own (a model converted before)."""
    return len(node.args) == 1 and not node.kwargs and getattr(conv, "activation", None) is None


def _ir_backend(backend: Optional[str]) -> bool:
    """The fused inverted residual has a cpu kernel only: built where that kernel can run (backend "cpu", or None
    with the extension loaded); elsewhere the expand conv and the separable conv keep their own kernels."""
    from ..runtime import registry

    return backend in (None, "cpu") and "cpu" in registry.available()


def fuse_for_inference(model: nn.Module, example_input: Optional[torch.Tensor] = None,
                       backend: Optional[str] = None) -> fx.GraphModule:
    """A traced, converted copy of `model` (eval mode) with batch norms, activations and residual adds folded into
    its convs; see the module docstring. Residual adds are folded only given `example_input` (run once to learn
    shapes: an add may broadcast, a fused residual may not). `backend` is passed to `convert_`. The returned
    module has a `fusion_report` attribute: the ConversionReport plus counts of what was folded."""
    model = copy.deepcopy(model).eval()
    unfold_live_(model)  # convert_'s live folds: folded here for good instead
    gm = fx.GraphModule(model, ConvTracer().trace(model))
    modules = dict(gm.named_modules())
    folded = {"batch_norm": 0, "scale": 0, "activation": 0, "separable": 0, "inverted_residual": 0, "residual": 0}
    # A module called from several places keeps its own function: folding into it would change every call.
    _, once = single_calls(gm, gm.graph)

    for node in list(gm.graph.nodes):  # conv → batch norm: one conv
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or not node.args:
            continue
        conv_node = node.args[0]
        is_call = isinstance(conv_node, fx.Node) and conv_node.op == "call_module"
        conv = modules.get(conv_node.target) if is_call else None
        if type(conv) not in _FOLDS_INTO or len(conv_node.users) != 1 or bn.track_running_stats is False \
                or not once(conv_node) or not once(node) or not _plain_call(conv_node, conv):
            continue
        fused = fuse_conv_bn_eval(conv, bn)
        set_module(gm, conv_node.target, fused)
        modules[conv_node.target] = fused
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        folded["batch_norm"] += 1

    for node in list(gm.graph.nodes):  # conv(x) * s: the conv's weight and bias times s
        conv_node, s = _times_number(node)
        conv = modules.get(conv_node.target) if conv_node is not None and conv_node.op == "call_module" else None
        if type(conv) not in _FOLDS_INTO or len(conv_node.users) != 1 or not once(conv_node) \
                or not _plain_call(conv_node, conv) or not conv.weight.is_floating_point():
            continue
        with torch.no_grad():  # new tensors: a weight tied to another module keeps its values there
            conv.weight = nn.Parameter(conv.weight * s, requires_grad=conv.weight.requires_grad)
            if conv.bias is not None:
                conv.bias = nn.Parameter(conv.bias * s, requires_grad=conv.bias.requires_grad)
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        folded["scale"] += 1

    report: ConversionReport = convert_(gm, backend=backend, fuse=False)
    modules = dict(gm.named_modules())

    for node in list(gm.graph.nodes):  # conv → activation: the conv's epilogue
        act = _activation(node, modules)
        conv_node = _sole_conv_input(node, modules) if act else None
        if conv_node is None or not once(conv_node) or not _plain_call(conv_node, modules[conv_node.target]):
            continue
        conv = modules[conv_node.target]
        conv.activation, conv.negative_slope = act
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        folded["activation"] += 1

    for node in list(gm.graph.nodes):  # depthwise conv (+ activation) → 1×1 conv: one fused separable conv
        pair = _separable_pair(node, modules, once)
        if pair is None:
            continue
        dw_node, dw, pw = pair
        slopes = {m.negative_slope for m in (dw, pw) if m.activation == "leaky_relu"}
        if len(slopes) > 1:
            continue  # one negative slope serves both activations of the fused op
        sep = SeparableConv2d.from_convs(dw, pw, dw.activation, pw.activation, slopes.pop() if slopes else 0.01,
                                         backend)
        dw.activation = pw.activation = None  # the pair's activations are the SeparableConv2d's now (applied once)
        set_module(gm, node.target, sep)
        modules[node.target] = sep
        node.args = (dw_node.args[0],)
        gm.graph.erase_node(dw_node)
        folded["separable"] += 1

    ir_ok = _ir_backend(backend)
    for node in list(gm.graph.nodes):  # 1×1 expand conv (+ activation) → fused separable conv: one inverted residual
        sep = modules.get(node.target) if node.op == "call_module" else None
        ex_node = node.args[0] if type(sep) is SeparableConv2d and len(node.args) == 1 and not node.kwargs else None
        ex = modules.get(ex_node.target) if isinstance(ex_node, fx.Node) and ex_node.op == "call_module" else None
        if type(ex) is not Conv2d or ex.kernel_size != (1, 1) or ex.stride != (1, 1) or ex.padding != (0, 0) \
                or ex.groups != 1 or len(ex_node.users) != 1 or len(ex_node.args) != 1 or ex_node.kwargs \
                or not once(ex_node) or not ex.weight.is_floating_point() or not ex.weight.is_cpu or not ir_ok \
                or (ex.activation == "leaky_relu" and "leaky_relu" in (sep.mid_activation, sep.activation)
                    and ex.negative_slope != sep.negative_slope):
            continue
        ir = InvertedResidual.from_convs(ex, sep, ex.activation, backend)
        if ex.activation == "leaky_relu":
            ir.negative_slope = ex.negative_slope
        ex.activation = None  # the InvertedResidual's now (applied once)
        set_module(gm, node.target, ir)
        modules[node.target] = ir
        node.args = (ex_node.args[0],)
        gm.graph.erase_node(ex_node)
        folded["inverted_residual"] += 1

    if example_input is not None:
        from torch.fx.passes.shape_prop import ShapeProp

        caller_layout.prime(gm, (example_input,))
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)

    def same_shape(a: fx.Node, b: fx.Node) -> bool:
        ma, mb = a.meta.get("tensor_meta"), b.meta.get("tensor_meta")
        return ma is not None and mb is not None and ma.shape == mb.shape and ma.dtype == mb.dtype

    for node in list(gm.graph.nodes) if example_input is not None else []:  # conv(x) + y: epilogue residual
        is_add = (node.op == "call_function" and node.target in _ADD_FUNCS) or \
                 (node.op == "call_method" and node.target == "add")
        if not is_add or len(node.args) != 2 or node.kwargs:
            continue
        for conv_node, other in ((node.args[0], node.args[1]), (node.args[1], node.args[0])):
            ok = isinstance(conv_node, fx.Node) and conv_node.op == "call_module" and \
                isinstance(modules.get(conv_node.target), (Conv2d, SeparableConv2d)) and \
                len(conv_node.users) == 1 and \
                once(conv_node) and \
                isinstance(other, fx.Node) and _plain_call(conv_node, modules[conv_node.target]) and \
                same_shape(conv_node, other)
            if ok:
                break
        else:
            continue
        node.prepend(conv_node)  # after `other`, which may come later in the traced order (a downsample path)
        conv_node.kwargs = {"residual": other}
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        folded["residual"] += 1

    gm.graph.lint()
    gm.delete_all_unused_submodules()  # the folded batch norms
    gm.recompile()
    gm.fusion_report = (report, folded)
    caller_layout.install(gm)  # its last layer may have changed since convert_
    return gm
