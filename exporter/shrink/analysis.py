"""Channel-flow analysis: which channels are dead, constant, coupled, or must be kept -- and why.

The model is traced with ``torch.export`` (so every functional add, cat, split, flatten and custom
autograd function is visible as the ATen op it really runs) and interpreted once on a seeded random
input. Every activation channel becomes a *slot*; ops that carry a channel through unchanged
(element-wise ops, BatchNorm, pools, depthwise conv, cat, flatten) join their slots in a union-find,
so each class -- a *component* -- is a set of channels that can only be removed together. Ops that
mix channels (conv, linear, AdderConv, BinaryConv, ChannelSelect) end a component: their outputs
start new slots, and they *read* their input channels. A component is removable when

* nothing that must see every channel reads it (model output, LayerNorm/GroupNorm/softmax, a
  channel split whose sizes are fixed in user code, an op this analysis does not know ...), and
* every mixing reader can do without it: it ignores the channel (zero weight column), or the
  channel is provably constant there and its constant contribution can be folded into the
  reader exactly (see README.md for the per-op table).

"Constant" is proved structurally from each op's math (e.g. BatchNorm with gamma = 0 outputs beta
whatever its input; conv with a zero filter outputs its bias); only the constant's *value* is read
from the interpreted run, and a channel the rules call constant but that varies there is treated
as varying.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import ShrinkError
from .modules import ChannelSelect

# ---- op tables (ATen overload packets, as str(node.target._overloadpacket)) --------------------
UNARY = {f"aten.{n}" for n in (
    "relu relu_ hardtanh hardtanh_ leaky_relu leaky_relu_ gelu silu silu_ sigmoid sigmoid_ tanh tanh_ elu "
    "elu_ relu6 hardswish hardswish_ hardsigmoid hardsigmoid_ mish softplus dropout dropout_ feature_dropout "
    "feature_dropout_ alpha_dropout clone contiguous alias detach abs neg exp square _to_copy to "
    "lift_fresh_copy").split()}
BINARY = {f"aten.{n}" for n in "add add_ sub sub_ mul mul_ div div_ maximum minimum rsub".split()}
BN = {"aten.batch_norm", "aten._native_batch_norm_legit_no_training"}
CONV = {"aten.conv2d", "aten.convolution"}
POOL_CONST = {"aten.max_pool2d", "aten.adaptive_avg_pool2d", "aten.adaptive_max_pool2d",
              "aten.max_pool2d_with_indices", "aten.upsample_nearest2d", "aten.upsample_bilinear2d"}
SPLITS = {"aten.split", "aten.split_with_sizes", "aten.chunk", "aten.tensor_split", "aten.unsafe_split",
          "aten.unsafe_chunk", "aten.unbind"}
NORM_READERS = {"aten.layer_norm": "LayerNorm", "aten.group_norm": "GroupNorm", "aten.instance_norm": "InstanceNorm",
                "aten.native_layer_norm": "LayerNorm", "aten.native_group_norm": "GroupNorm",
                "aten.softmax": "softmax", "aten._softmax": "softmax", "aten.log_softmax": "log_softmax",
                "aten._log_softmax": "log_softmax"}
SHAPE_OPS = {"aten.view", "aten.reshape", "aten._unsafe_view", "aten.squeeze", "aten.unsqueeze", "aten.flatten"}


@dataclass
class TInfo:
    """Per-channel facts of one activation tensor (channel axis 1)."""
    slots: np.ndarray          # int64 [C] union-find ids
    const: np.ndarray          # bool [C]: provably independent of the input and of position
    value: np.ndarray          # float64 [C]: the constant (meaningful where const)

    @property
    def zero(self):
        return self.const & (self.value == 0)


@dataclass
class Reader:
    kind: str          # conv | linear | adder | binary | select
    module: str
    index: int         # input channel / feature index at the module
    const: bool
    value: float
    padded: bool = False
    binarize_input: bool = False


@dataclass
class Component:
    root: int
    blocks: list = field(default_factory=list)     # reasons it must be kept
    readers: list = field(default_factory=list)    # [(Reader)]
    members: set = field(default_factory=set)      # {(module, role, idx)}
    has_const: bool = False                         # some tensor of it is a provable constant
    notes: list = field(default_factory=list)       # facts worth reporting when it is kept
    # decision
    removable: bool = False
    keep_reason: str | None = None
    folds: list = field(default_factory=list)      # [(Reader, exact: bool)]


class _UF:
    def __init__(self):
        self.p: list[int] = []

    def new(self, n: int) -> np.ndarray:
        s = len(self.p)
        self.p.extend(range(s, s + n))
        return np.arange(s, s + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.p
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int):
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _key(node) -> str:
    t = node.target
    pk = getattr(t, "_overloadpacket", None)
    if pk is not None:
        return str(pk)
    if t is operator.getitem:
        return "getitem"
    return getattr(t, "__name__", str(t))


def _nodes_in(a):
    out = []
    if isinstance(a, torch.fx.Node):
        out.append(a)
    elif isinstance(a, (list, tuple)):
        for x in a:
            out.extend(_nodes_in(x))
    elif isinstance(a, dict):
        for x in a.values():
            out.extend(_nodes_in(x))
    return out


def _channel_stats(t: torch.Tensor):
    """Per channel: (is uniform over batch and positions, mean value)."""
    t = t.detach()
    c = t.shape[1]
    if t.numel() == 0:
        return np.ones(c, bool), np.zeros(c)
    dims = [d for d in range(t.dim()) if d != 1]
    lo, hi = t.amin(dim=dims).double(), t.amax(dim=dims).double()
    scale = torch.maximum(lo.abs(), hi.abs()).clamp(min=1.0)
    return ((hi - lo) <= 1e-6 * scale).cpu().numpy(), t.mean(dim=dims, dtype=torch.float64).cpu().numpy()


class Analysis:
    """Trace, interpret and analyse one (normalised, eval-mode) model."""

    def __init__(self, model: nn.Module, example_inputs: tuple, seed: int = 0):
        self.model = model
        self.modules = dict(model.named_modules())
        try:
            ep = torch.export.export(model, tuple(example_inputs), strict=False)
        except Exception as e:  # noqa: BLE001 - any tracing failure is the user's model
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ShrinkError(f"cannot trace the model with torch.export to find its channels: {msg}") from e
        self.gm = ep.module()
        g = torch.Generator().manual_seed(seed)
        self.inputs = tuple(torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device) if isinstance(x, torch.Tensor)
                            and x.is_floating_point() else x for x in example_inputs)
        self.uf = _UF()
        self.info: dict = {}
        self.env: dict = {}
        self.act: dict = {}
        self._blocks: list = []    # (slot, reason)
        self._readers: list = []   # (slot, Reader)
        self._members: list = []   # (slot, (module, role, idx))
        self._const_slots: set = set()
        self._notes: list = []     # (slot, note)
        self.mixing_nodes: dict = {}  # module name -> node (for reporting shapes)
        self._run()

    # ------------------------------------------------------------------ helpers
    def _fresh(self, t: torch.Tensor, const=None, reason=None) -> TInfo:
        c = t.shape[1]
        slots = self.uf.new(c)
        uni, mean = _channel_stats(t)
        const = np.zeros(c, bool) if const is None else (np.asarray(const, bool) & uni)
        info = TInfo(slots, const, np.where(const, mean, 0.0))
        self._const_slots.update(int(s) for s in slots[const])
        if reason:
            for s in slots:
                self._blocks.append((int(s), reason))
        return info

    def _derived(self, t: torch.Tensor, slots: np.ndarray, const) -> TInfo:
        uni, mean = _channel_stats(t)
        const = np.asarray(const, bool) & uni
        info = TInfo(np.asarray(slots, np.int64), const, np.where(const, mean, 0.0))
        self._const_slots.update(int(s) for s in info.slots[const])
        return info

    def _block(self, info: TInfo | None, reason: str):
        if info is None:
            return
        for s in info.slots:
            self._blocks.append((int(s), reason))

    def _param_module(self, node, suffix=None):
        """The module owning a get_attr parameter node ('conv1.weight' -> 'conv1')."""
        if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
            return None
        name, _, attr = node.target.rpartition(".")
        if suffix is not None and attr != suffix:
            return None
        return name

    def _where(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            path, cls = list(stack.values())[-1]
            cls = cls.rsplit(".", 1)[-1] if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            return f"{path or '<model>'} ({cls})"
        return "<model>"

    def _ainfo(self, a):
        """TInfo of an activation argument (None for constants)."""
        if isinstance(a, torch.fx.Node) and self.act.get(a):
            return self.info.get(a)
        return None

    def _barrier(self, node, val, why: str):
        for a in _nodes_in((node.args, node.kwargs)):
            inf = self.info.get(a) if self.act.get(a) else None
            if isinstance(inf, list):
                for i in inf:
                    self._block(i, why)
            else:
                self._block(inf, why)
        if isinstance(val, torch.Tensor) and val.dim() >= 2 and self.act.get(node):
            return self._fresh(val, reason=why)
        if isinstance(val, (list, tuple)) and self.act.get(node):
            return [self._fresh(v, reason=why) if isinstance(v, torch.Tensor) and v.dim() >= 2 else None for v in val]
        return None

    # ------------------------------------------------------------------ the pass
    def _run(self):
        gm = self.gm
        env = self.env
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        flat = [a for a in torch.utils._pytree.tree_leaves(self.inputs)]
        if len(flat) != len(placeholders):
            raise ShrinkError("cannot match the example inputs to the traced model's inputs")
        it = iter(flat)
        with torch.no_grad():
            for node in gm.graph.nodes:
                if node.op == "placeholder":
                    val = next(it)
                    env[node] = val
                    self.act[node] = isinstance(val, torch.Tensor)
                    if isinstance(val, torch.Tensor) and val.dim() >= 2:
                        self.info[node] = self._fresh(val, reason="model input")
                    continue
                if node.op == "get_attr":
                    obj = gm
                    for p in node.target.split("."):
                        obj = getattr(obj, p)
                    env[node] = obj
                    self.act[node] = False
                    continue
                if node.op == "output":
                    for a in _nodes_in(node.args):
                        inf = self.info.get(a) if self.act.get(a) else None
                        for i in (inf if isinstance(inf, list) else [inf]):
                            self._block(i, "model output")
                    continue
                args = torch.fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
                if node.op == "call_function":
                    val = node.target(*args, **kwargs)
                elif node.op == "call_method":
                    val = getattr(args[0], node.target)(*args[1:], **kwargs)
                else:  # call_module
                    val = gm.get_submodule(node.target)(*args, **kwargs)
                env[node] = val
                self.act[node] = any(self.act.get(a, False) for a in _nodes_in((node.args, node.kwargs)))
                if not self.act[node]:
                    continue
                self.info[node] = self._transfer(node, val)

    # ------------------------------------------------------------------ per-op rules
    def _transfer(self, node, val):
        k = _key(node)
        a = node.args
        where = self._where(node)
        if k == "getitem":
            src = self.info.get(a[0])
            if isinstance(src, list):
                return src[a[1]] if a[1] < len(src) else None
            return self._barrier(node, val, f"indexing in {where}")
        if k in SPLITS or k in ("aten.narrow", "aten.slice", "aten.select", "aten.index_select") and not (
                k == "aten.index_select" and self._is_select(node)):
            return self._split_like(node, val, k, where)
        if k == "aten.index_select":
            return self._select(node, val)
        x = self._ainfo(a[0]) if a else None
        if k in ("aten.dropout", "aten.dropout_", "aten.feature_dropout", "aten.feature_dropout_",
                 "aten.alpha_dropout") and len(a) > 2 and a[2]:
            if x is None:
                return self._barrier(node, val, f"{k} in {where}")
            return self._derived(val, x.slots, x.zero)  # training-mode dropout: random scaling keeps only 0
        if k in UNARY:
            if x is None or not isinstance(val, torch.Tensor) or tuple(val.shape) != tuple(env_shape(self.env[a[0]])):
                return self._barrier(node, val, f"{k} in {where}")
            return self._derived(val, x.slots, x.const)
        if k in BINARY:
            return self._binary(node, val, k, where)
        if k in BN:
            return self._batchnorm(node, val, x, where)
        if k in CONV:
            return self._conv(node, val, x, where)
        if k == "aten.linear":
            return self._linear(node, val, x, where)
        if k == "cmc.adder_conv":
            return self._adder(node, val, x, where)
        if k == "cmc.binary_conv_train":
            return self._binary_conv(node, val, x, where)
        if k in POOL_CONST:
            if x is None:
                return self._barrier(node, val, f"{k} in {where}")
            if isinstance(val, (tuple, list)):
                return [self._derived(val[0], x.slots, x.const), None]
            return self._derived(val, x.slots, x.const)
        if k == "aten.avg_pool2d":
            if x is None:
                return self._barrier(node, val, f"{k} in {where}")
            pad = a[3] if len(a) > 3 else 0
            include = a[5] if len(a) > 5 else True
            padded = any(int(p) for p in (pad if isinstance(pad, (list, tuple)) else [pad]))
            const = x.const if (not padded or not include) else x.zero
            return self._derived(val, x.slots, const)
        if k in ("aten.mean", "aten.sum", "aten.amax", "aten.amin"):
            dims = a[1] if len(a) > 1 else None
            rank = self.env[a[0]].dim()
            dims = [d % rank for d in (dims if isinstance(dims, (list, tuple)) else [dims])] if dims is not None else None
            keep = bool(a[2]) if len(a) > 2 else bool(node.kwargs.get("keepdim", False))
            if x is None or dims is None or 0 in dims or 1 in dims or (not keep and val.dim() < 2):
                return self._barrier(node, val, f"{k} over channels in {where}")
            return self._derived(val, x.slots, x.const)
        if k in ("aten.pad", "aten.constant_pad_nd"):
            if x is None or val.shape[1] != x.slots.size:
                return self._barrier(node, val, f"{k} in {where}")
            return self._derived(val, x.slots, x.zero)
        if k == "aten.cat":
            return self._cat(node, val, where)
        if k in SHAPE_OPS:
            return self._reshape(node, val, x, k, where)
        if k in NORM_READERS:
            return self._barrier(node, val, f"read by {NORM_READERS[k]} in {where}: its statistics include "
                                            "every channel, so removing one changes the result")
        if k == "cmc.binary_conv":
            return self._barrier(node, val, f"packed BinaryConv in {where} (pack after shrinking)")
        return self._barrier(node, val, f"{k} in {where} is not understood by the channel analysis")

    def _is_select(self, node):
        idx = node.args[2] if len(node.args) > 2 else None
        mod = self._param_module(idx, "index")
        return mod is not None and isinstance(self.modules.get(mod), ChannelSelect) and node.args[1] in (1, -3)

    def _split_like(self, node, val, k, where):
        a = node.args
        x = self._ainfo(a[0])
        rank = self.env[a[0]].dim()
        dim = 0
        if k in ("aten.split", "aten.split_with_sizes", "aten.chunk", "aten.tensor_split", "aten.unsafe_split",
                 "aten.unsafe_chunk"):
            dim = a[2] if len(a) > 2 else node.kwargs.get("dim", 0)
        elif k in ("aten.narrow", "aten.slice", "aten.select", "aten.index_select", "aten.unbind"):
            dim = a[1] if len(a) > 1 else node.kwargs.get("dim", 0)
        dim = dim % rank
        outs = val if isinstance(val, (list, tuple)) else [val]
        if x is not None and dim >= 2 and all(isinstance(v, torch.Tensor) and v.dim() == rank for v in outs):
            res = [self._derived(v, x.slots, x.const) for v in outs]
            return res if isinstance(val, (list, tuple)) else res[0]
        what = {"aten.chunk": "chunk", "aten.split": "split", "aten.split_with_sizes": "split"}.get(k, k)
        return self._barrier(node, val, f"channel {what} in {where}: its sizes are fixed in user code, so the "
                                        "branches' channels cannot be removed independently")

    def _select(self, node, val):
        x = self._ainfo(node.args[0])
        mod = self._param_module(node.args[2], "index")
        sel = self.env[node.args[2]].tolist()
        if x is None:
            return self._barrier(node, val, f"ChannelSelect {mod}")
        out = self._fresh(val, const=x.const[sel])
        for j, s in enumerate(out.slots):
            self._members.append((int(s), (mod, "out", j)))
        for c, s in enumerate(x.slots):
            self._members.append((int(s), (mod, "in", c)))
        for j, c in enumerate(sel):
            self._readers.append((int(x.slots[c]), Reader("select", mod, c, bool(x.const[c]), float(x.value[c]))))
        self.mixing_nodes[mod] = node
        return out

    def _binary(self, node, val, k, where):
        ops = node.args[:2]
        if not isinstance(val, torch.Tensor) or val.dim() < 2:
            return self._barrier(node, val, f"{k} in {where}")
        c = val.shape[1]
        infos, consts, values = [], [], []
        for o in ops:
            inf = self._ainfo(o)
            if inf is not None:
                # same channels; other axes may broadcast (squeeze-and-excitation: [N, C, 1, 1] * [N, C, H, W])
                if inf.slots.size != c or self.env[o].dim() != val.dim():
                    return self._barrier(node, val, f"{k} with broadcasting over channels in {where}")
                infos.append(inf)
                consts.append(inf.const)
                values.append(inf.value)
            elif isinstance(o, torch.fx.Node) and self.act.get(o):
                # an activation broadcast over channels (e.g. [N, 1, H, W]): varies, carries no channel
                consts.append(np.zeros(c, bool))
                values.append(np.zeros(c))
            else:
                v = self.env[o] if isinstance(o, torch.fx.Node) else o
                if isinstance(v, torch.Tensor) and v.numel() != 1:
                    return self._barrier(node, val, f"{k} with a non-scalar parameter tensor in {where}")
                fv = float(v) if isinstance(v, (int, float, bool, torch.Tensor)) else float("nan")
                consts.append(np.full(c, np.isfinite(fv)))
                values.append(np.full(c, fv))
        slots = infos[0].slots
        for inf in infos[1:]:
            for s1, s2 in zip(slots, inf.slots):
                self.uf.union(s1, s2)
        const = np.logical_and.reduce(consts)
        base = k.split(".")[1].rstrip("_")
        if base == "mul":
            const = const | np.logical_or.reduce([cs & (v == 0) for cs, v in zip(consts, values)])
        elif base == "div":
            const = const | (consts[0] & (values[0] == 0))
        return self._derived(val, slots, const)

    def _batchnorm(self, node, val, x, where):
        a = node.args
        if x is None:
            return self._barrier(node, val, f"BatchNorm in {where}")
        training = a[5] if len(a) > 5 and isinstance(a[5], bool) else False
        mod = self._param_module(a[1], "weight") or self._param_module(a[3], "running_mean")
        if training or mod is None:
            return self._barrier(node, val, f"BatchNorm in {where} (training mode or no module)")
        w = self.env[a[1]] if a[1] is not None else None
        gamma0 = (w.detach() == 0).cpu().numpy() if w is not None else np.zeros(x.slots.size, bool)
        for c, s in enumerate(x.slots):
            self._members.append((int(s), (mod, "bn", c)))
        return self._derived(val, x.slots, gamma0 | x.const)

    def _weight_module(self, node, wnode, cls, where, val):
        mod = self._param_module(wnode, "weight")
        m = self.modules.get(mod) if mod is not None else None
        if m is None or not isinstance(m, cls):
            return None
        return mod

    def _conv(self, node, val, x, where):
        a = node.args
        mod = self._weight_module(node, a[1], nn.Conv2d, where, val)
        if x is None or mod is None:
            return self._barrier(node, val, f"convolution in {where} (weight computed in forward or not an nn.Conv2d)")
        m = self.modules[mod]
        w = m.weight.detach()
        pad = m.padding
        padded = (pad == "same" and max(m.kernel_size) > 1) or (isinstance(pad, tuple) and any(pad))
        if m.padding_mode != "zeros" and padded:
            padded = True
        cin, cout = x.slots.size, w.shape[0]
        if m.groups == 1:
            nz = (w != 0).flatten(2).any(2).cpu().numpy()  # [M, C]
            ok_in = x.zero | (x.const & (not padded))
            const = ~(nz & ~ok_in[None, :]).any(1)
            out = self._fresh(val, const=const)
            for j, s in enumerate(out.slots):
                self._members.append((int(s), (mod, "out", j)))
            for c, s in enumerate(x.slots):
                self._members.append((int(s), (mod, "in", c)))
                self._readers.append((int(s), Reader("conv", mod, c, bool(x.const[c]), float(x.value[c]), padded)))
            self.mixing_nodes[mod] = node
            return out
        if m.groups == cin == cout and w.shape[1] == 1:
            wz = (w == 0).flatten(1).all(1).cpu().numpy()
            const = wz | x.zero | (x.const & (not padded))
            for c, s in enumerate(x.slots):
                self._members.append((int(s), (mod, "dw", c)))
            self.mixing_nodes[mod] = node
            return self._derived(val, x.slots, const)
        return self._barrier(node, val, f"grouped convolution {mod} (groups={m.groups}): its groups must stay "
                                        "equal, and cmc does not re-plan channels across groups")

    def _linear(self, node, val, x, where):
        a = node.args
        mod = self._weight_module(node, a[1], nn.Linear, where, val)
        if x is None or mod is None or self.env[a[0]].dim() != 2:
            return self._barrier(node, val, f"linear in {where} (not a 2-D nn.Linear)")
        w = self.modules[mod].weight.detach()
        nz = (w != 0).cpu().numpy()
        const = ~(nz & ~x.const[None, :]).any(1)
        out = self._fresh(val, const=const)
        for j, s in enumerate(out.slots):
            self._members.append((int(s), (mod, "out", j)))
        for f, s in enumerate(x.slots):
            self._members.append((int(s), (mod, "in", f)))
            self._readers.append((int(s), Reader("linear", mod, f, bool(x.const[f]), float(x.value[f]))))
        self.mixing_nodes[mod] = node
        return out

    def _cmc_conv(self, node, val, x, where, cls, kind):
        a = node.args
        mod = self._weight_module(node, a[1], cls, where, val)
        group = a[7]
        if x is None or mod is None or group != 1:
            return None, mod
        pads = list(a[5])
        padded = any(int(p) for p in pads)
        scale_eff = self.env[a[2]].detach()
        binarize = bool(a[8]) if kind == "binary" else False
        # all-constant input -> constant output: zero input channels are exact for AdderConv even when
        # padded (padded taps add |w| as a zero channel does); for BinaryConv only without binarize
        # (binarize(0) = +1, and padded taps add 0, so a binarized zero channel varies at the borders).
        zero_ok = kind == "adder" or not binarize
        ok_in = (x.zero if zero_ok else np.zeros_like(x.zero)) | (x.const & (not padded))
        const = (scale_eff == 0).cpu().numpy() | bool(ok_in.all())
        out = self._fresh(val, const=const)
        wz = (self.modules[mod].weight.detach() == 0).flatten(1).all(1).cpu().numpy()
        for j, s in enumerate(out.slots):
            self._members.append((int(s), (mod, "out", j)))
            if kind == "adder" and wz[j] and not out.const[j]:
                self._notes.append((int(s), f"AdderConv {mod} has zero filters; they output -sum|x|, not 0"))
        for c, s in enumerate(x.slots):
            self._members.append((int(s), (mod, "in", c)))
            self._readers.append((int(s), Reader(kind, mod, c, bool(x.const[c]), float(x.value[c]), padded, binarize)))
        self.mixing_nodes[mod] = node
        return out, mod

    def _adder(self, node, val, x, where):
        from cmc.plugins.adder_conv import AdderConv2d
        out, mod = self._cmc_conv(node, val, x, where, AdderConv2d, "adder")
        return out if out is not None else self._barrier(node, val, f"AdderConv {mod or where} (grouped or weight "
                                                                    "computed in forward)")

    def _binary_conv(self, node, val, x, where):
        from cmc.plugins.binary_conv.layer import BinaryConv2d
        out, mod = self._cmc_conv(node, val, x, where, BinaryConv2d, "binary")
        return out if out is not None else self._barrier(node, val, f"BinaryConv {mod or where} (grouped or weight "
                                                                    "computed in forward)")

    def _cat(self, node, val, where):
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        infos = [self._ainfo(t) for t in tensors]
        rank = val.dim()
        dim = dim % rank
        if any(i is None for i in infos):
            return self._barrier(node, val, f"concatenation with a constant in {where}")
        if dim == 1:
            return self._derived(val, np.concatenate([i.slots for i in infos]),
                                 np.concatenate([i.const for i in infos]))
        if dim >= 2:
            for i in infos[1:]:
                for s1, s2 in zip(infos[0].slots, i.slots):
                    self.uf.union(s1, s2)
            return self._derived(val, infos[0].slots, np.logical_and.reduce([i.const for i in infos]))
        return self._barrier(node, val, f"concatenation over the batch in {where}")

    def _reshape(self, node, val, x, k, where):
        src = self.env[node.args[0]]
        if x is None or not isinstance(val, torch.Tensor) or val.dim() < 2 or val.shape[0] != src.shape[0]:
            return self._barrier(node, val, f"{k} in {where}")
        size = node.args[1] if len(node.args) > 1 else None
        if k in ("aten.view", "aten.reshape", "aten._unsafe_view") and isinstance(size, (list, tuple)) \
                and len(size) > 1 and size[1] != -1:
            # a size written into user code (view(n, 512, 1, 1)) would not follow a shrunk tensor
            return self._barrier(node, val, f"reshape to a fixed channel count {list(size)} in {where}: the size "
                                            "is written in user code")
        if val.shape[1] == src.shape[1]:
            return self._derived(val, x.slots, x.const)
        inner = int(np.prod(src.shape[2:])) if src.dim() > 2 else 1
        if val.dim() == 2 and val.shape[1] == src.shape[1] * inner:
            return self._derived(val, np.repeat(x.slots, inner), np.repeat(x.const, inner))
        return self._barrier(node, val, f"{k} that moves the channel axis in {where}")

    # ------------------------------------------------------------------ components
    def components(self) -> dict[int, Component]:
        comps: dict[int, Component] = {}

        def comp(s):
            r = self.uf.find(s)
            c = comps.get(r)
            if c is None:
                c = comps[r] = Component(r)
            return c
        for s in range(len(self.uf.p)):
            comp(s)
        for s, why in self._blocks:
            c = comp(s)
            if why not in c.blocks:
                c.blocks.append(why)
        for s, r in self._readers:
            comp(s).readers.append(r)
        for s, m in self._members:
            comp(s).members.add(m)
        for s in self._const_slots:
            comp(s).has_const = True
        for s, note in self._notes:
            c = comp(s)
            if note not in c.notes:
                c.notes.append(note)
        return comps


def env_shape(v):
    return tuple(v.shape) if isinstance(v, torch.Tensor) else ()
