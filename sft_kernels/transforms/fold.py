"""In-place folding of batch norms and activation modules into the convs before them (quantize_ uses it).

`fuse_for_inference` returns a traced copy; a torchao-style verb such as quantize_ changes the model the user holds
and keeps its Python forward. So here torch.fx only reads the model's structure and the changes are made to its
modules: a batch norm (eval statistics) right after a conv is folded into the conv's weight and bias and replaced
by nn.Identity; a ReLU / LeakyReLU / ReLU6 module right after a conv (or after such a batch norm) becomes the
conv's epilogue activation and is replaced by nn.Identity. Only where the conv's result feeds nothing else and each
module runs once in the forward. Models torch.fx cannot trace fall back to neighbours in nn.Sequential containers.

`fold_live_` (convert_) folds the same chains without changing what the model computes in training: the conv becomes
a FoldedConv2d (nn/folded_conv.py) that runs the batch norm and activation itself, folded in eval mode and apart in
train mode; `unfold_live_` undoes it for the transforms that work on the plain modules.
"""
from __future__ import annotations

import operator
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..nn import Conv2d, InvertedResidual, Linear, SeparableConv2d
from ..nn.conv import activation_of, sharing_parameters
from ..nn.linear import LINEAR_ATTRS
from ..nn.folded_conv import FOLD_ATTRS, FoldedConv2d, FusedAway
from ..nn.pooling import MaxPool2d
from ..nn.quantized import QuantConv2d, is_int8
from .caller_layout import BackToCaller, CallerLayout
from .swap import set_module
from .tracing import graph as _graph


def _is_conv(m) -> bool:
    return type(m) in (nn.Conv2d, Conv2d) and getattr(m, "activation", None) is None


def _is_linear(m) -> bool:
    """An nn.Linear or converted Linear without an activation: an activation after it folds (a batch norm does not)."""
    return type(m) in (nn.Linear, Linear) and getattr(m, "activation", None) is None


def plan(model: nn.Module) -> list:
    """[(conv name, batch norm name or None, activation module name or None)] for the chains that fold; a Linear
    (nn.Linear or converted) in a conv's place is followed by an activation alone."""
    graph = _graph(model)
    if graph is None:  # untraceable forward: the nn.Sequential neighbours are still safe to fold
        return _sequential_plan(model, Counter(id(m) for _, m in model.named_modules(remove_duplicate=False)))
    mods, single = single_calls(model, graph)
    chains = []
    for node in graph.nodes:
        if not single(node) or not (_is_conv(mods[node.target]) or _is_linear(mods[node.target])) \
                or len(node.args) != 1 or node.kwargs:
            continue
        conv, bn, act, tail = node.target, None, None, node
        nxt = next(iter(tail.users)) if len(tail.users) == 1 else None
        if single(nxt) and type(mods[nxt.target]) is nn.BatchNorm2d and mods[nxt.target].track_running_stats \
                and _is_conv(mods[node.target]):
            bn, tail = nxt.target, nxt
            nxt = next(iter(tail.users)) if len(tail.users) == 1 else None
        if single(nxt) and activation_of(mods[nxt.target]) and nxt.args[0] is tail:
            act = nxt.target
        if bn or act:
            chains.append((conv, bn, act))
    return chains


def single_calls(model: nn.Module, graph):
    """(modules by name, single(node)): whether a node calls a module that runs at this one place, by one name."""
    mods = dict(model.named_modules())
    owners = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def single(node) -> bool:
        return (isinstance(node, fx.Node) and node.op == "call_module" and node.target in mods
                and calls[node.target] == 1 and owners[id(mods[node.target])] == 1)

    return mods, single


def chain_int8_(model: nn.Module) -> list:
    """Where an int8 conv's output feeds only int8 convs (through nothing but identities: a batch norm or activation
    folded away, and max pools, which then pool the uint8 bytes), make it return uint8 requantized with its readers'
    input parameters, so no float map is written between them. Each reader takes it as its input (a fused separable
    conv counts by its 1×1 conv as a writer and by its depthwise conv as a reader, an inverted residual by its
    expand conv; readers of one map have one input grid) or as its residual (a QuantConv2d, which then dequantizes
    it with `residual_quant`), and at least one takes it as input. In a GraphModule (such as fuse_for_inference's) a
    ReLU that follows the writer (ResNet's after its residual add) is dropped when the readers' grid has zero point
    0: its clamp at 0 is then the requantization's. The model's own graph says all this (traced, or a
    GraphModule's); untraceable models are left as they are. Returns [(writer, readers)]."""
    graph = _graph(model)
    if graph is None:
        return []
    mods, single = single_calls(model, graph)
    editable = isinstance(model, fx.GraphModule)

    def writer(m):  # the int8 conv that writes the module's output, or None
        m = m.pw if isinstance(m, SeparableConv2d) else m
        return m if is_int8(m) else None

    def reading(user, out):  # (int8 conv, "input" or "residual") where `user` reads `out` so, else None
        if not single(user):
            return None
        m, res = mods[user.target], user.kwargs.get("residual")
        if user.args == (out,) and set(user.kwargs) <= {"residual"} and res is not out:
            m = m.ex if isinstance(m, InvertedResidual) else m.dw if isinstance(m, SeparableConv2d) else m
            return (m, "input") if is_int8(m) else None
        if res is out and out not in user.args and isinstance(m, QuantConv2d) and is_int8(m):
            return m, "residual"
        return None

    done = []
    for node in list(graph.nodes):
        prod = writer(mods[node.target]) if single(node) else None
        if prod is None or prod.out_scale:
            continue
        tail, pools = node, []
        while len(tail.users) == 1:  # past identities (folded batch norms and activations) and max pools
            nxt = next(iter(tail.users))
            if single(nxt) and type(mods[nxt.target]) is nn.Identity and nxt.args[:1] == (tail,):
                tail = nxt
            elif _max_pool(nxt, tail, mods):
                tail = nxt
                pools.append(nxt.target)
            else:
                break
        relu = next(iter(tail.users)) if len(tail.users) == 1 else None
        relu = relu if editable and prod.activation is None and _is_relu(relu, tail, mods) else None
        out = relu if relu is not None else tail
        readers = [reading(u, out) for u in out.users]
        inputs = [m for m, how in filter(None, readers) if how == "input"]
        if not readers or None in readers or not inputs:
            continue
        scale, zp = inputs[0].input_scale, inputs[0].input_zero_point
        # readers of one map were calibrated on the same values: their grids agree (to rounding) or nothing chains
        if any(m.input_zero_point != zp or abs(m.input_scale - scale) > 1e-3 * scale for m in inputs) or \
                (relu is not None and zp != 0):
            continue
        prod.out_scale, prod.out_zero_point = scale, zp
        done.append((node.target, ", ".join(u.target for u in out.users)))
        for m, how in readers:
            if how == "input":
                m.input_scale = scale
            else:
                m.residual_quant = (scale, zp)
        for name in pools:  # the max commutes with the uint8 grid: these pool the bytes (nn/pooling.py)
            if type(mods[name]) is nn.MaxPool2d:
                set_module(model, name, MaxPool2d.from_pool(mods[name]))
        if relu is not None:
            relu.replace_all_uses_with(tail)
            graph.erase_node(relu)
    if editable and done:
        model.recompile()
    return done


def float_residual_adds(model: nn.Module) -> list:
    """The int8 convs whose output meets an addition in the model's own Python forward (quantize_ notes them: a
    GraphModule from fuse_for_inference has the residual adds inside its convs, where the maps can stay uint8)."""
    graph = None if isinstance(model, fx.GraphModule) else _graph(model)
    if graph is None:
        return []
    mods, single = single_calls(model, graph)
    found = []
    for node in graph.nodes:
        if not ((node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)) or
                (node.op == "call_method" and node.target in ("add", "add_"))):
            continue
        for src in node.args[:2]:
            while single(src) and type(mods[src.target]) is nn.Identity:  # folded batch norms and activations
                src = src.args[0]
            if single(src) and is_int8(mods[src.target]):
                found.append(src.target)
    return found


def _max_pool(node, arg, mods) -> bool:
    """Whether fx node `node` is a max pool module called on `arg` alone (without indices)."""
    m = mods.get(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None
    return isinstance(m, nn.MaxPool2d) and not m.return_indices and node.args == (arg,) and not node.kwargs


def _is_relu(node, arg, mods) -> bool:
    """Whether fx node `node` computes relu(arg) alone: torch.relu, F.relu, Tensor.relu or an nn.ReLU module."""
    if not isinstance(node, fx.Node) or node.args[:1] != (arg,) or len(node.args) != 1:
        return False
    if node.op == "call_function":
        return node.target in (torch.relu, torch.relu_, F.relu)
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return node.op == "call_module" and type(mods.get(node.target)) is nn.ReLU


def _sequential_plan(model: nn.Module, owners: Counter) -> list:
    chains = []
    for prefix, seq in model.named_modules():
        if type(seq) is not nn.Sequential:
            continue
        kids = list(seq.named_children())
        for i, (name, m) in enumerate(kids):
            if not (_is_conv(m) or _is_linear(m)) or owners[id(m)] != 1:
                continue
            j, bn, act = i + 1, None, None
            if j < len(kids) and type(kids[j][1]) is nn.BatchNorm2d and kids[j][1].track_running_stats \
                    and owners[id(kids[j][1])] == 1 and _is_conv(m):
                bn, j = kids[j][0], j + 1
            if j < len(kids) and activation_of(kids[j][1]) and owners[id(kids[j][1])] == 1:
                act = kids[j][0]
            full = (lambda n: f"{prefix}.{n}" if prefix else n)  # noqa: E731
            if bn or act:
                chains.append((full(name), bn and full(bn), act and full(act)))
    return chains


def fold_batch_norms_(model: nn.Module, chains: list, wanted: Callable[[str], bool]) -> list:
    """Fold the planned batch norms of the convs `wanted(name)` accepts; returns [(conv, batch norm)]."""
    done = []
    for conv, bn, _ in chains:
        if bn is None or not wanted(conv):
            continue
        c, b = model.get_submodule(conv), model.get_submodule(bn)
        was = c.training
        set_module(model, conv, fuse_conv_bn_eval(c.eval(), b.eval()).train(was))
        set_module(model, bn, nn.Identity())
        done.append((conv, bn))
    return done


def fold_activations_(model: nn.Module, chains: list, takes: Callable[[nn.Module], bool]) -> list:
    """Make the planned activations the epilogue of the convs (as they are now) that `takes(conv)` accepts;
    returns [(conv, activation module)]."""
    done = []
    for conv, bn, act in chains:
        if act is None or (bn is not None and type(model.get_submodule(bn)) is not nn.Identity):
            continue
        c = model.get_submodule(conv)
        if not takes(c) or getattr(c, "activation", None) is not None:
            continue
        c.activation, c.negative_slope = activation_of(model.get_submodule(act))
        set_module(model, act, nn.Identity())
        done.append((conv, act))
    return done


def fold_live_(model: nn.Module, chains: list) -> list:
    """Fold the planned (conv, batch norm or None, activation or None) chains of converted convs (transforms/fold.py's
    plan, by module name) into FoldedConv2d modules, in place; returns the chains folded."""
    done = []
    for conv, bn, act in chains:
        c = model.get_submodule(conv)
        if type(c) is Linear and c.activation is None and act and hasattr(c, "_sft_original_class") \
                and not _user_hooks(c) and not _user_hooks(model.get_submodule(act)):
            a = model.get_submodule(act)
            c.activation, c.negative_slope = activation_of(a)
            set_module(model, act, FusedAway(a, f"the linear {conv}"))
            done.append((conv, None, act))
            continue
        if type(c) is not Conv2d or c.activation is not None or not hasattr(c, "_sft_original_class"):
            continue
        b = model.get_submodule(bn) if bn else None
        a = model.get_submodule(act) if act else None
        if b is not None and (b.running_mean is None or b.running_var is None):
            continue
        if any(_user_hooks(m) for m in (c, b, a) if m is not None):
            continue  # a hook on the batch norm or activation would no longer run; one on the conv would see more
        places = {name: FusedAway(m, f"the conv {conv}") for name, m in ((bn, b), (act, a)) if m is not None}
        set_module(model, conv, FoldedConv2d.fold(c, places.get(bn), a))
        for name, place in places.items():
            set_module(model, name, place)
        done.append((conv, bn, act))
    return done


def _user_hooks(m: nn.Module) -> bool:
    """Whether `m` has forward hooks other than caller_layout's."""
    return any(not isinstance(h, (BackToCaller, CallerLayout))
               for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values()))


def unfold_live_(model: nn.Module) -> list:
    """Undo fold_live_ in place: each FoldedConv2d becomes a converted Conv2d again and its batch norm and activation
    modules come back (with the train / eval mode their places had); convert_'s Linear layers become nn.Linear again
    (their activation modules back), for the transforms that work on plain modules. Returns the names of the convs
    and Linears whose folds were undone."""
    done = []
    for name, m in list(model.named_modules()):
        if isinstance(m, FusedAway) and m.__dict__["_sft_into"].startswith(("the conv ", "the linear ")):
            orig = m.__dict__["_sft_replaced"]
            orig.train(m.training)
            set_module(model, name, orig)
        elif type(m) is Linear and hasattr(m, "_sft_original_class"):  # (convert_'s: its activation is a fold's)
            set_module(model, name, sharing_parameters(m._sft_original_class, m, lambda k: k in LINEAR_ATTRS))
            if m.activation is not None:
                done.append(name)
        elif isinstance(m, FoldedConv2d):
            conv = Conv2d.from_conv(m, m.backend)
            conv._sft_original_class = m._sft_original_class
            for k in FOLD_ATTRS:
                conv.__dict__.pop(k, None)
            set_module(model, name, conv)
            done.append(name)
    return done
