"""Channel dependency groups found by tracing a model (torch.fx), for models that do not describe their own.

    groups = channel_groups(model, example)

One forward of `example` through the traced graph gives every tensor's channel count; each op then says how its
output's channels relate to its inputs' (DepGraph-style, Fang et al. 2023, reduced to what CNNs use):
- a conv (groups 1) reads one channel space and writes a new one; a depthwise conv (multiplier 1), a BatchNorm2d,
  activations, pooling, resizing and dropout keep their input's space (they follow it: rebuilt with the same
  indices);
- elementwise ops of two tensors with the same channels (a residual add, an SFT modulation x·scale + shift) join
  their spaces into one, so every layer writing or reading either keeps the same indices;
- PixelShuffle(r) right after a conv makes that conv a producer of r² channels per shuffled channel;
- flattening a 1×1 map keeps its channels as features, so a Linear classifier reads them (its input side shrinks).
Anything else fixes its spaces: the model's inputs and outputs, concatenations, grouped convs, reshapes, parameters
used as tensors, ops this file does not know and modules it does not rebuild (converted or quantized convs). A
module used at two places whose spaces differ fixes both. Only spaces with a producer and nothing fixed become
groups: conservative, so a pruned model computes what its smaller architecture says.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..tracing import ConvTracer
from .group import ChannelGroup

# Modules and functions whose output has its (first) tensor input's channels, index for index.
_KEEP_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
                 nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity, nn.Dropout,
                 nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample,
                 nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ReflectionPad2d,
                 nn.ReplicationPad2d, nn.ConstantPad2d)
_KEEP_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardtanh, F.hardswish,
                   F.hardsigmoid, F.softplus, F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d,
                   F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate, F.pad, torch.relu, torch.sigmoid,
                   torch.tanh, torch.clamp, torch.abs, torch.neg, torch.exp, F.sigmoid, F.tanh,
                   operator.neg}
_KEEP_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "abs", "neg", "exp", "contiguous", "float",
                 "clone", "detach", "to", "type_as"}
# Elementwise ops of several tensors: equal channel counts join their spaces (broadcast single channels do not).
_JOIN_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
                   operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum,
                   torch.addcmul, torch.where}
_JOIN_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "addcmul", "addcmul_", "expand_as"}


class _Spaces:
    """Union-find over channel spaces, with each space's size, members and whether it is fixed."""

    def __init__(self):
        self.parent, self.size, self.fixed = [], [], []
        self.producers, self.consumers, self.followers = [], [], []

    def new(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        for members in (self.producers, self.consumers, self.followers):
            members.append([])
        return len(self.parent) - 1

    def root(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def join(self, a: int, b: int) -> int:
        a, b = self.root(a), self.root(b)
        if a == b:
            return a
        self.parent[b] = a
        self.fixed[a] = self.fixed[a] or self.fixed[b] or self.size[a] != self.size[b]
        for members in (self.producers, self.consumers, self.followers):
            members[a] += members[b]
        return a

    def fix(self, s) -> None:
        if s is not None:
            self.fixed[self.root(s)] = True


def _shape(node):
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _tensor_args(node) -> list:
    """The fx nodes among a node's arguments (nested in lists and tuples too)."""
    found = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
    return found


def _trace(model: nn.Module, example) -> fx.GraphModule:
    try:
        # converted, pruned and quantized convs stay single nodes (fixed spaces: they are not rebuilt)
        gm = fx.GraphModule(model, ConvTracer().trace(model))
    except Exception as e:  # noqa: BLE001 - any tracing failure means: describe the groups by hand
        raise ValueError(f"{type(model).__name__} could not be traced with torch.fx to find its channel dependency "
                         f"groups ({type(e).__name__}: {e}); define _sft_kernels_channel_groups() on the model "
                         "(see transforms/prune/channels.py) or pass groups=") from e
    was = model.training
    model.eval()  # shape propagation must not move batch-norm statistics
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*(example if isinstance(example, tuple) else (example,)))
    finally:
        model.train(was)
    return gm


def channel_groups(model: nn.Module, example) -> list:
    """The ChannelGroups of `model` (see the module docstring), traced with `example` (an input or a tuple)."""
    gm = _trace(model, example)
    mods = dict(gm.named_modules())
    sp = _Spaces()
    space = {}  # node -> channel space of its output (dim 1), for tensors of 2+ dims
    uses = {}  # module name -> [(role, space)]

    def fresh(node, fixed=False):
        shape = _shape(node)
        if shape is not None and len(shape) >= 2:
            space[node] = sp.new(shape[1], fixed)

    def fix_inputs(node):
        for a in _tensor_args(node):
            sp.fix(space.get(a))

    def keep(node, src):
        if src in space:
            space[node] = space[src]
        else:
            fresh(node, fixed=True)

    def flatten_keeps(node, src) -> bool:  # (N, C, 1, 1) -> (N, C): the channels become the features
        a, b = _shape(src), _shape(node)
        return a is not None and b is not None and len(a) == 4 and a[2] * a[3] == 1 and b == a[:2]

    def add_use(name, role, s):
        getattr(sp, role)[sp.root(s)].append(name if role != "producers" else (name, 1))
        uses.setdefault(name, []).append((role, s))

    for node in gm.graph.nodes:
        args = [a for a in node.args if isinstance(a, fx.Node)]
        src = args[0] if args else None
        if node.op == "placeholder" or node.op == "get_attr":
            fresh(node, fixed=True)
        elif node.op == "output":
            fix_inputs(node)
        elif node.op == "call_module":
            m = mods[node.target]
            if type(m) is nn.Conv2d and src in space and _shape(node) is not None:
                if m.groups == 1:
                    add_use(node.target, "consumers", space[src])
                    fresh(node)
                    add_use(node.target, "producers", space[node])
                elif m.groups == m.in_channels == m.out_channels:
                    keep(node, src)
                    add_use(node.target, "followers", space[node])
                else:
                    fix_inputs(node)
                    fresh(node, fixed=True)
            elif type(m) is nn.BatchNorm2d and src in space:
                keep(node, src)
                add_use(node.target, "followers", space[node])
            elif isinstance(m, _KEEP_MODULES) or (isinstance(m, nn.PReLU) and m.num_parameters == 1):
                keep(node, src)
            elif type(m) is nn.PixelShuffle and src is not None and src.op == "call_module" \
                    and type(mods[src.target]) is nn.Conv2d and mods[src.target].groups == 1 and len(src.users) == 1:
                unshuffled = (src.target, 1)  # the conv writes the shuffled space now, not its own
                sp.producers[sp.root(space[src])].remove(unshuffled)
                uses[src.target].remove(("producers", space[src]))
                fresh(node)
                sp.producers[sp.root(space[node])].append((src.target, m.upscale_factor ** 2))
                uses.setdefault(src.target, []).append(("producers", space[node]))
            elif type(m) is nn.Flatten and flatten_keeps(node, src):
                keep(node, src)
            elif type(m) is nn.Linear and src in space and len(_shape(src)) == 2:
                add_use(node.target, "consumers", space[src])
                fresh(node, fixed=True)
            else:
                fix_inputs(node)
                fresh(node, fixed=True)
        elif node.op in ("call_function", "call_method"):
            target = node.target
            if node.op == "call_function" and target in _KEEP_FUNCTIONS or \
                    node.op == "call_method" and target in _KEEP_METHODS:
                keep(node, src)
            elif node.op == "call_function" and target in _JOIN_FUNCTIONS or \
                    node.op == "call_method" and target in _JOIN_METHODS:
                shape = _shape(node)
                wide = [a for a in _tensor_args(node) if a in space and shape is not None and len(shape) >= 2
                        and len(_shape(a)) == len(shape) and _shape(a)[1] == shape[1]]
                for a in _tensor_args(node):  # other tensors (a broadcast channel stays free; anything else fixes)
                    if a in space and a not in wide and _shape(a)[1] != 1:
                        sp.fix(space[a])
                if wide:
                    s = space[wide[0]]
                    for a in wide[1:]:
                        s = sp.join(s, space[a])
                    space[node] = s
                else:
                    fresh(node, fixed=True)
            elif (node.op == "call_function" and target is torch.flatten
                  or node.op == "call_method" and target in ("flatten", "view", "reshape")) \
                    and src in space and flatten_keeps(node, src):
                keep(node, src)
            elif node.op == "call_method" and target in ("size", "dim") or target is getattr:
                pass  # not a tensor
            else:
                fix_inputs(node)
                fresh(node, fixed=True)

    # A module used at several places must find the same space at each for each role.
    for name, entries in uses.items():
        roots = {}
        for role, s in entries:
            roots.setdefault(role, set()).add(sp.root(s))
        if any(len(r) > 1 for r in roots.values()):
            for r in roots.values():
                for s in r:
                    sp.fixed[s] = True
    groups = []
    for s in range(len(sp.parent)):
        if sp.root(s) != s or sp.fixed[s] or not sp.producers[s]:
            continue
        producers = list(dict.fromkeys(sp.producers[s]))
        names = [n for n, _ in producers]
        label = names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} sharing its channels)"
        groups.append(ChannelGroup(label, sp.size[s], producers, list(dict.fromkeys(sp.consumers[s])),
                                   followers=list(dict.fromkeys(sp.followers[s]))))
    return groups
